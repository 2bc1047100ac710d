"""Every sentence a Discord user reads that bot/messages.py does not already write, and the
button labels (the twin of telegram/texts.py)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.catalog import Catalog
from bot.community import ChatRules
from bot.messages import entry_label, human_size, model_line, rules_text
from bot.models import JobAction, Kind
from bot.sessions import Entry, Session

__all__ = [
    "BUTTON_EMOJI",
    "BUTTON_LABELS",
    "HELP_TEXT",
    "INTERNAL_ERROR_TEXT",
    "MAX_CONTENT",
    "NO_GALLERY_HERE_TEXT",
    "OOPS_TEXT",
    "REMIX_PLACEHOLDER",
    "REMIX_PROMPT_LABEL",
    "RESULT_UNAVAILABLE_TEXT",
    "SETTINGS_HINT",
    "THREAD_FAILED_TEXT",
    "THREAD_IN_THREAD_TEXT",
    "USAGE_SCOPES",
    "attachment_unreachable_text",
    "card_placeholder_text",
    "entry_note",
    "link_note",
    "missing_permissions_text",
    "models_text",
    "no_thread_permission_text",
    "not_an_image_text",
    "ready_text",
    "remix_title",
    "send_again_label",
    "session_started_text",
    "setting_label",
    "settings_text",
    "thread_name",
    "vote_label",
]

MAX_CONTENT = 2000  # characters in one Discord message

BUTTON_LABELS = {
    JobAction.REROLL: "Reroll",
    JobAction.ANIMATE: "Animate",
    JobAction.UPSCALE: "4K",
    JobAction.CONFIRM: "Confirm",
    JobAction.CANCEL: "Cancel",
    JobAction.SEND_AGAIN: "Send again",
    JobAction.VOTE: "0",  # an entry's vote button shows its count (vote_label)
    JobAction.REMIX: "Remix",
}
BUTTON_EMOJI = {
    JobAction.REROLL: "🔁",
    JobAction.ANIMATE: "🎬",
    JobAction.UPSCALE: "🔍",
    JobAction.CONFIRM: "✅",
    JobAction.CANCEL: "✖️",
    JobAction.SEND_AGAIN: "📨",
    JobAction.VOTE: "❤️",
    JobAction.REMIX: "🎨",  # as on Telegram
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
    "• `/session start theme` starts a creative session here (admins, or everyone when "
    "`session_starters` says so): every /imagine and /video is an entry until it ends. Set its "
    "`duration`, `budget`, `per_person` and `video`, or `thread` to run it in a thread of its "
    "own. `/session show` shows how it stands, `/session end` ends it (its starter or an "
    "admin), `/session gallery` gives its gallery link.\n"
    "Under each result: **Reroll** makes it again, **Animate** turns an image into a video, "
    "**4K** redoes a Nano Banana image at 4K. Anyone can press them; the new job is theirs. "
    "Under a session entry, ❤️ votes for it (again: takes the vote back) and **Remix** makes a "
    "new entry from it with your prompt.\n"
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


# -- creative sessions ------------------------------------------------------------------------

THREAD_IN_THREAD_TEXT = (
    "This is a thread already, so a session can't open one here. Start it without `thread` "
    "and it runs in this thread."
)
THREAD_FAILED_TEXT = (
    "I couldn't open a thread for the session, so I ended it. Try again, or start it "
    "without `thread`."
)
NO_GALLERY_HERE_TEXT = (
    "No session has run here yet, so there is no gallery. Start one with /session start."
)
REMIX_PROMPT_LABEL = "What should the remix show?"  # a modal's label: at most 45 characters
REMIX_PLACEHOLDER = "e.g. the same scene at night, in watercolour"  # at most 100


def vote_label(votes: int) -> str:
    """The vote button under an entry, beside its ❤️: the count."""
    return str(votes)


def entry_note(entry: Entry) -> str:
    """The first line of an entry's result: "🎨 #3 · remix of #1 by Ann"."""
    return f"🎨 {entry_label(entry)}"


def remix_title(number: int | None) -> str:
    """The Remix modal's title (at most 45 characters)."""
    return f"Remix #{number}" if number is not None else "Remix this image"


def thread_name(theme: str) -> str:
    """A session's thread: its theme (a thread's name holds 1-100 characters)."""
    return f"🎨 {' '.join(theme.split())}"[:100]


def card_placeholder_text(theme: str) -> str:
    """The card of a session in a thread of its own, for the moment before it is shown."""
    return f"🎨 Starting a session: “{' '.join(theme.split())}”…"


def session_started_text(session: Session, *, thread_id: str | None = None) -> str:
    """The starter's private answer. `<t:…>` is shown in each reader's own time zone."""
    until = f"<t:{int(session.ends_at)}:t> (<t:{int(session.ends_at)}:R>)"
    theme = f"“{' '.join(session.theme.split())}”"
    if thread_id is not None:
        return (
            f"🎨 Your session {theme} has started in <#{thread_id}>: every /imagine and /video "
            f"there is an entry until {until}. Its card is above the thread."
        )
    return (
        f"🎨 Your session {theme} has started: every /imagine and /video here is an entry "
        f"until {until}. Its card is in the channel."
    )


def no_thread_permission_text(missing: Sequence[str]) -> str:
    names = " and ".join(missing)
    return (
        f"I can't open a thread for the session here: I'm missing {names}. Ask a server "
        "admin to give it to me, or start the session without `thread`."
    )
