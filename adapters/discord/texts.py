"""Every sentence a Discord user reads that bot/messages.py does not already write, and the
button labels (the twin of telegram/texts.py)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.catalog import Catalog
from bot.community import ChatRules
from bot.media import human_size
from bot.messages import model_line, rules_text
from bot.models import JobAction, Kind

__all__ = [
    "BUTTON_EMOJI",
    "BUTTON_LABELS",
    "HELP_TEXT",
    "INTERNAL_ERROR_TEXT",
    "MAX_CONTENT",
    "OOPS_TEXT",
    "RESULT_UNAVAILABLE_TEXT",
    "SETTINGS_HINT",
    "USAGE_SCOPES",
    "attachment_unreachable_text",
    "link_note",
    "missing_permissions_text",
    "models_text",
    "not_an_image_text",
    "ready_text",
    "send_again_label",
    "setting_label",
    "settings_text",
]

MAX_CONTENT = 2000  # characters in one Discord message

BUTTON_LABELS = {
    JobAction.REROLL: "Reroll",
    JobAction.ANIMATE: "Animate",
    JobAction.UPSCALE: "4K",
    JobAction.CONFIRM: "Confirm",
    JobAction.CANCEL: "Cancel",
    JobAction.SEND_AGAIN: "Send again",
}
BUTTON_EMOJI = {
    JobAction.REROLL: "🔁",
    JobAction.ANIMATE: "🎬",
    JobAction.UPSCALE: "🔍",
    JobAction.CONFIRM: "✅",
    JobAction.CANCEL: "✖️",
    JobAction.SEND_AGAIN: "📨",
}

HELP_TEXT = (
    "**genrelay** makes images and videos with hosted models.\n"
    "• `/imagine prompt` makes an image. Pick a `model`, `aspect_ratio` and `quality`, "
    "and attach up to 3 reference images.\n"
    "• `/video prompt` makes a video; attach a photo to animate it.\n"
    "• `/models` lists every model with its price.\n"
    "• `/history` lists your recent jobs here; **Send again** brings a result back.\n"
    "• `/usage` shows what you made and spent today and this server's budget left "
    "(`scope: chat` shows everyone's, for admins).\n"
    "• `/cancel` stops your newest job if it was not sent yet.\n"
    "• `/settings show` lists this server's rules: limits, budget, models, blocked words. "
    "Members with Manage Server change one with `/settings set`.\n"
    "Under each result: **Reroll** makes it again, **Animate** turns an image into a video, "
    "**4K** redoes a Nano Banana image at 4K. Anyone can press them; the new job is theirs.\n"
    "When the server is busy, jobs wait in line and people take turns; a waiting job has a "
    "**Cancel** button. If videos need confirming, the asker sees the cost first and only "
    "they can press **Confirm**."
)
# The last line of /settings here, in place of the core's (which names Telegram's command).
SETTINGS_HINT = "Members with Manage Server change one with /settings set."
USAGE_SCOPES = {"me": "me — your jobs and spend today", "chat": "chat — everyone's (admins)"}
# Only before a job is recorded (after, a failure to show it is logged and the job goes on).
INTERNAL_ERROR_TEXT = "Something went wrong on my side, so nothing was started. Please try again."
OOPS_TEXT = "Something went wrong on my side. Please try again."
RESULT_UNAVAILABLE_TEXT = (
    "I couldn't fetch that result again; the link has expired. Reroll it from the original "
    "message to make it anew."
)


def models_text(catalog: Catalog) -> str:
    """/models: every model by kind, with its price."""
    parts = []
    for kind, title in (
        (Kind.IMAGE, "Image models · /imagine"),
        (Kind.VIDEO, "Video models · /video"),
    ):
        lines = [model_line(spec) for spec in catalog.all(kind)]
        parts.append(f"**{title}**\n" + "\n".join(lines))
    return "\n\n".join(parts)[:MAX_CONTENT]


def not_an_image_text(filename: str) -> str:
    return f"“{filename}” is not an image I can use. Attach a JPEG, PNG, WebP or GIF."


def attachment_unreachable_text(filename: str | None) -> str:
    name = f"“{filename}”" if filename else "your image"
    return f"I couldn't download {name} from Discord. Please attach it again."


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


def settings_text(rules: ChatRules) -> str:
    """/settings show: the chat's rules with Discord's way to change one as its last line."""
    return rules_text(rules, hint=SETTINGS_HINT)


def setting_label(name: str, meaning: str) -> str:
    """A setting as /settings set offers it (a choice name: at most 100 characters)."""
    return f"{name} — {meaning}"[:100]


def send_again_label(place: int) -> str:
    """The button under /history for the job on line `place`."""
    return f"Send again {place}"
