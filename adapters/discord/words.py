"""Every sentence a Discord user reads that bot/messages.py does not already write."""

from __future__ import annotations

from collections.abc import Sequence

from bot.media import human_size

__all__ = [
    "BUTTON_EMOJI",
    "BUTTON_LABELS",
    "HELP_TEXT",
    "INTERNAL_ERROR_TEXT",
    "link_note",
    "missing_permissions_text",
    "not_an_image_text",
    "ready_text",
]

BUTTON_LABELS = {"rr": "Reroll", "an": "Animate", "4k": "4K"}
BUTTON_EMOJI = {"rr": "🔁", "an": "🎬", "4k": "🔍"}

HELP_TEXT = (
    "**genrelay** makes images and videos with hosted models.\n"
    "• `/imagine prompt` makes an image. Pick a `model`, `aspect_ratio` and `quality`, "
    "and attach up to 3 reference images.\n"
    "• `/video prompt` makes a video; attach a photo to animate it.\n"
    "• `/models` lists every model with its price.\n"
    "Under each result: **Reroll** makes it again, **Animate** turns an image into a video, "
    "**4K** redoes a Nano Banana image at 4K. Anyone can press them; the new job is theirs."
)
INTERNAL_ERROR_TEXT = "Something went wrong on my side, so nothing was started. Please try again."


def not_an_image_text(filename: str) -> str:
    return f"“{filename}” is not an image I can use. Attach a JPEG, PNG, WebP or GIF."


def missing_permissions_text(missing: Sequence[str]) -> str:
    names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
    which = "these permissions" if len(missing) > 1 else "this permission"
    return (
        f"I can't post results in this channel: I'm missing {names}. "
        f"I didn't start anything. Ask a server admin to give me {which} here, "
        "or use me in another channel."
    )


def link_note(what: str, size: int | None, limit: int, url: str) -> str:
    """Said instead of an upload that is over the limit Discord gave for the interaction."""
    size_text = f" is {human_size(size)}, more than" if size else " is larger than"
    return (
        f"📎 This {what}{size_text} the {human_size(limit)} I can upload here, so here is "
        f"a link instead (it expires, so save it soon): {url}"
    )


def ready_text(user_id: str, what: str) -> str:
    """The first line of a result posted to the channel (after the interaction expired)."""
    return f"<@{user_id}> your {what} is ready."
