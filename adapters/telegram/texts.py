"""Every Telegram-specific sentence and button: help, /models, refusals about Telegram's own
limits, link notes, button labels and callback answers. Words about jobs come from
bot/messages.py; this module only adds what only Telegram needs."""

from __future__ import annotations

import html

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from adapters.commands import OPTIONS_HELP
from bot.catalog import Catalog
from bot.community import SETTING_NAMES
from bot.messages import SESSION_USAGE, human_size, model_line, plural, progress_text
from bot.models import Job, JobAction, JobState, Kind, Origin

__all__ = [
    "ACTIONS",
    "ACTION_ANSWERS",
    "BOT_COMMANDS",
    "BUTTON_RE",
    "CALLBACK_ANSWER_MAX",
    "CONFIRMED",
    "CONFIRM_FIRST",
    "DOWNLOAD_FAILED",
    "MAX_TEXT",
    "NOT_POSTED",
    "NOT_POSTED_FAILURE",
    "OOPS",
    "ORIGINAL_NOTE",
    "ORIGINAL_SENDING",
    "REMIX_LABEL",
    "RESENDING",
    "RESULT_UNAVAILABLE",
    "SOMETHING_WRONG",
    "VOTE_LABEL",
    "board_buttons",
    "board_text",
    "cancel_button",
    "clip",
    "confirm_buttons",
    "delivery_retry_text",
    "entry_buttons",
    "fallback_note",
    "help_text",
    "history_buttons",
    "link_note",
    "mention_html",
    "models_text",
    "not_an_image",
    "over_download_limit",
    "remix_how",
    "result_buttons",
    "session_usage_text",
    "setting_hint",
    "start_text",
    "voted_job",
    "with_votes",
]

# The command menu Telegram shows (setMyCommands).
BOT_COMMANDS = (
    BotCommand("imagine", "Make an image, e.g. /imagine a fox in snow"),
    BotCommand("video", "Make a video, or animate a photo"),
    BotCommand("models", "Every model, with what it costs"),
    BotCommand("history", "Your recent jobs here, to get a result again"),
    BotCommand("usage", "What you made and spent today"),
    BotCommand("cancel", "Stop your job that hasn't been sent yet"),
    BotCommand("settings", "This chat's limits and models"),
    BotCommand("session", "A creative session: /session start <theme>"),
    BotCommand("help", "How to use me, with examples"),
)

# The buttons Telegram shows (Original: the uncompressed original of an image result, on
# demand). callback_data is "<action>:<job id>": 13 bytes, far below Telegram's 64.
ACTIONS = (
    JobAction.REROLL,
    JobAction.ANIMATE,
    JobAction.UPSCALE,
    JobAction.CONFIRM,
    JobAction.CANCEL,
    JobAction.RESEND,
    JobAction.ORIGINAL,
    JobAction.VOTE,
    JobAction.REMIX,
)
BUTTON_RE = rf"^({'|'.join(ACTIONS)}):[a-z0-9]{{4,32}}$"
ACTION_ANSWERS = {
    JobAction.REROLL: "🔁 Rerolling on {name}…",
    JobAction.ANIMATE: "🎬 Animating with {name}…",
    JobAction.UPSCALE: "🔍 Making a 4K version with {name}…",
}
CONFIRM_FIRST = " Press Confirm under my reply to start it."  # after an answer, for a held job
CONFIRMED = "✅ Confirmed."
RESENDING = "📤 Sending it again…"
RESULT_UNAVAILABLE = "I couldn't fetch that result again; it has probably expired."
_FOUR_K = frozenset({"4k", "ultra"})

ORIGINAL_NOTE = "Full-quality original, without Telegram's compression."
ORIGINAL_SENDING = "📎 Sending the original…"
# Every way of posting a result here failed (the status message says so).
NOT_POSTED = "⚠️ I couldn't post the result here; it's kept — use /history to get it."
NOT_POSTED_FAILURE = "⚠️ This job has ended, but I couldn't post how here. /history shows it."
DOWNLOAD_FAILED = "I couldn't fetch that photo from Telegram. Please send it again."
# Only when the core holds no job for the request (generate.py's `apology` checks).
SOMETHING_WRONG = "⚠️ Something went wrong on my side and nothing was made. Please try again."
OOPS = "⚠️ Something went wrong on my side. Please try again."

MAX_TEXT = 4096  # Telegram's limit for a message
CALLBACK_ANSWER_MAX = 200  # Telegram's limit for answerCallbackQuery text

VOTE_LABEL = "❤️ {votes}"  # a session entry's vote button, with its votes
REMIX_LABEL = "🎨 Remix"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def help_text(catalog: Catalog) -> str:
    image = catalog.default_for(Kind.IMAGE).name
    video = catalog.default_for(Kind.VIDEO).name
    return (
        "🎨 I make images and videos with AI models.\n\n"
        f"/imagine <prompt> – an image ({image} unless you pick another model)\n"
        f"/video <prompt> – a video ({video} unless you pick another model)\n"
        "/models – every model, with what it costs\n"
        "/history – your recent jobs here, to get a result again\n"
        "/usage – what you made and spent today (/usage chat: everyone's, for admins)\n"
        "/cancel – stop your job that hasn't been sent yet\n"
        "/settings – this chat's limits and models (admins change them)\n\n"
        "/session start <theme> – a creative session: every /imagine and /video here is an "
        "entry, everyone votes with ❤️, and replying to an entry with /imagine <prompt> "
        "remixes it (/session shows it, /session end ends it, /session gallery links "
        "its gallery)\n\n"
        "Examples:\n"
        "/imagine a red fox in fresh snow --ar 9:16\n"
        "/video waves rolling onto a beach at sunset --model veo\n"
        "/imagine a neon city poster --model nanobanana_pro --quality 4k\n\n"
        "📷 Send a photo (or an album) with the caption /video <prompt> to animate it, or "
        "/imagine <prompt> to edit it. Replying to a photo with the command works too.\n"
        f"Options: {OPTIONS_HELP}."
    )


def start_text(catalog: Catalog) -> str:
    return "👋 Hi! " + help_text(catalog)


def models_text(catalog: Catalog) -> str:
    defaults = {catalog.default_image, catalog.default_video}
    lines = ["Models (★ = default):"]
    for spec in catalog.all():
        lines.append(model_line(spec) + (" ★" if spec.code in defaults else ""))
    lines.append("\nPick one with --model, e.g. /video a paper boat on a lake --model veo")
    return "\n".join(lines)


def over_download_limit(size: int | None, *, is_photo: bool, limit: int) -> str:
    what = "photo" if is_photo else "file"
    how_big = f" is {human_size(size)}," if size else " is"
    return (
        f"That {what}{how_big} over Telegram's {limit // 1_000_000} MB download limit for "
        "bots. Send it as a compressed photo, or a smaller file."
    )


def not_an_image(filename: str) -> str:
    return (
        f"That file ({filename}) is not an image. Send a photo, or a JPEG, PNG, WebP or GIF file."
    )


def link_note(kind: Kind, size: int | None, limit_mb: int) -> str:
    what = "video" if kind is Kind.VIDEO else "image"
    how_big = f"is {human_size(size)}" if size else "is too large"
    return (
        f"📎 This {what} {how_big}, over the {limit_mb} MB Telegram lets bots upload, "
        "so here is a link instead (it works for a limited time):"
    )


def fallback_note(kind: Kind, *, unsure: bool) -> str:
    """Above a link sent because Telegram refused the upload (`unsure`: it did not answer
    in time twice, so the file may have arrived after all)."""
    what = "video" if kind is Kind.VIDEO else "image"
    if unsure:
        return (
            f"📎 Telegram was too slow to take this {what}. If it isn't above, here is a link "
            "(it works for a limited time):"
        )
    return (
        f"📎 Telegram wouldn't take this {what} as an upload, so here is a link instead "
        "(it works for a limited time):"
    )


def delivery_retry_text(job: Job) -> str:
    """The status message while a job's outcome waits to be posted again."""
    if job.state is not JobState.SUCCEEDED:
        return "📤 Your job has ended, but I couldn't post how yet. I'll try again shortly."
    what = "video" if job.kind is Kind.VIDEO else "image"
    return f"📤 Your {what} is ready, but I couldn't post it yet. I'll try again shortly."


def mention_html(origin: Origin) -> str:
    """A link that notifies the asker; empty for anonymous senders (a chat, not a user)."""
    if origin.context.get("anonymous") or not origin.user_id.isdigit():
        return ""
    name = html.escape(origin.user_name or "you")
    return f'<a href="tg://user?id={origin.user_id}">{name}</a>'


def _button(label: str, action: JobAction, job: Job) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=f"{action}:{job.id}")


def result_buttons(
    job: Job, catalog: Catalog, *, original: bool = False
) -> InlineKeyboardMarkup | None:
    """Reroll under every result or failure; Animate under images; 4K under Nano Banana
    images that are not 4K yet; with `original` (a photo, which Telegram recompresses), a
    second row with 📎 Original, which sends the uncompressed file when pressed."""
    if job.state is JobState.REJECTED:
        return None
    row = [_button("🔁 Reroll", JobAction.REROLL, job)]
    if job.state is JobState.SUCCEEDED and job.kind is Kind.IMAGE:
        row.append(_button("🎬 Animate", JobAction.ANIMATE, job))
        spec = catalog.resolve(job.model)
        if spec is not None and "4k" in spec.qualities and (job.quality or "") not in _FOUR_K:
            row.append(_button("🔍 4K", JobAction.UPSCALE, job))
    if original and job.state is JobState.SUCCEEDED:
        return InlineKeyboardMarkup([row, [_button("📎 Original", JobAction.ORIGINAL, job)]])
    return InlineKeyboardMarkup([row])


def entry_buttons(
    markup: InlineKeyboardMarkup | None, job: Job, votes: int
) -> InlineKeyboardMarkup:
    """A session entry's result: a first row with its vote button, showing its votes
    (pressing it votes, pressing again takes the vote back), and 🎨 Remix under an image;
    then the result's own buttons (`markup`)."""
    row = [_button(VOTE_LABEL.format(votes=votes), JobAction.VOTE, job)]
    if job.kind is Kind.IMAGE:
        row.append(_button(REMIX_LABEL, JobAction.REMIX, job))
    return InlineKeyboardMarkup([row, *(markup.inline_keyboard if markup else ())])


def with_votes(markup: InlineKeyboardMarkup, job_id: str, votes: int) -> InlineKeyboardMarkup:
    """`markup` (an entry's result's, as the chat shows it) with its vote button showing
    `votes`; every other button as it is."""
    data = f"{JobAction.VOTE}:{job_id}"
    label = VOTE_LABEL.format(votes=votes)
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(label, callback_data=data) if b.callback_data == data else b
                for b in row
            ]
            for row in markup.inline_keyboard
        ]
    )


def voted_job(markup: InlineKeyboardMarkup | None) -> str | None:
    """The job whose vote button `markup` holds: a message with one is a session entry's
    result (a reply to it with /imagine remixes it)."""
    for row in markup.inline_keyboard if markup else ():
        for button in row:
            if isinstance(button.callback_data, str):
                action, _, job_id = button.callback_data.partition(":")
                if action == JobAction.VOTE:
                    return job_id
    return None


def session_usage_text() -> str:
    """/session with a word it does not know: what it does."""
    return (
        "🎨 Creative sessions:\n"
        f"{SESSION_USAGE} – start one here\n"
        "/session – how the one here stands\n"
        "/session end – end it (whoever started it, or an admin)\n"
        "/session gallery – the link to its gallery"
    )


def remix_how(number: int) -> str:
    """The answer to 🎨 Remix: how to remix that entry."""
    return f"🎨 To remix #{number}, reply to its image with /imagine and your prompt."


def confirm_buttons(job: Job) -> InlineKeyboardMarkup:
    """Under a video that waits for its asker's Confirm."""
    return InlineKeyboardMarkup(
        [
            [
                _button("✅ Confirm", JobAction.CONFIRM, job),
                _button("✖️ Cancel", JobAction.CANCEL, job),
            ]
        ]
    )


def cancel_button(job: Job) -> InlineKeyboardMarkup:
    """Under the status line of a job still waiting on our side."""
    return InlineKeyboardMarkup([[_button("✖️ Cancel", JobAction.CANCEL, job)]])


def board_text(jobs: list[Job], catalog: Catalog) -> str:
    """A busy chat's status board: one numbered line per running job, who asked and where
    it is (plain text: names are shown, nobody is pinged)."""
    lines = [f"📋 Working on {plural(len(jobs), 'request')} in this chat:"]
    for n, job in enumerate(jobs, 1):
        who = job.origin.user_name or "someone"
        lines.append(f"{n}. {who}: {progress_text(job, catalog)}")
    return "\n".join(lines)


def board_buttons(jobs: list[Job]) -> InlineKeyboardMarkup | None:
    """A Cancel button for each job on the board still waiting on our side, numbered as
    on the board (only its asker may press it)."""
    buttons = [
        _button(f"✖️ Cancel #{n}", JobAction.CANCEL, job)
        for n, job in enumerate(jobs, 1)
        if job.state is JobState.RECEIVED and job.queue_position
    ]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


def history_buttons(numbered: list[tuple[int, Job]]) -> InlineKeyboardMarkup | None:
    """A Send again button for each listed result still stored, numbered as in the list."""
    buttons = [_button(f"📤 Send #{n} again", JobAction.RESEND, job) for n, job in numbered]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


def setting_hint(name: str, shown: str) -> str:
    """/settings <name> without a value: what it is now, what it means, how to change it."""
    return (
        f"⚙️ {name}: {shown} — {SETTING_NAMES[name]}.\n"
        f"Admins change it with /settings {name} <value>."
    )
