"""Every sentence a chat user reads from the core, in one place: plain functions from the
core's values (jobs, outcomes, refusals, figures) to words. Adapters lay them out; what only
one platform says lives in its texts module."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from bot.catalog import Catalog, ModelSpec
from bot.community import SETTING_NAMES, ChatRules, Refusal, day_start
from bot.models import Job, JobState, Kind
from bot.outcomes import (
    AlreadyFinished,
    AlreadyStarted,
    BadBudget,
    Cancelled,
    CancelOutcome,
    ChatUsage,
    NotAChoice,
    NothingToCancel,
    NotOnOff,
    NotWhole,
    SettingChanged,
    SettingRefusal,
    UnknownModel,
    UnknownSetting,
    UsageReport,
    WrongKindModel,
)
from bot.session_messages import *  # noqa: F403 (the words of creative sessions, named below)
from bot.session_messages import __all__ as _session_words
from bot.session_messages import history_mark, session_limit_text

__all__ = [
    "CANCELLED",
    "NOT_ADMIN_SETTINGS",
    "NOT_ADMIN_USAGE",
    "NOT_HELD",
    "NOT_YOURS_CANCEL",
    "NOT_YOURS_CONFIRM",
    "NOT_YOURS_RESEND",
    "NO_4K",
    "NO_RESULT",
    "ONLY_AN_IMAGE",
    "OTHER_CHAT",
    "REFUSED",
    "RESULT_GONE",
    "RULES_HINT",
    "UNKNOWN_JOB",
    "bar",
    "blocked_word_text",
    "cancel_text",
    "chat_usage_text",
    "confirm_expired_text",
    "confirm_text",
    "failure_text",
    "format_wait",
    "history_text",
    "limit_text",
    "model_line",
    "model_not_allowed_text",
    "ordinal",
    "plural",
    "progress_text",
    "result_caption",
    "rules_text",
    "setting_changed_text",
    "setting_refusal_text",
    "setting_shown",
    "short_prompt",
    "usage_text",
    *_session_words,
]

# -- refusals of a request or a button ------------------------------------------------------

REFUSED = "That request was refused."
OTHER_CHAT = "That button is for a job from another chat, so it does nothing here."
NOT_YOURS_CONFIRM = "Only the person who asked can confirm this."
NOT_YOURS_CANCEL = "Only the person who asked can cancel it."
NOT_YOURS_RESEND = "Only the person who asked can get this result again."
NOT_HELD = "This request is no longer waiting for confirmation."
UNKNOWN_JOB = "I can't find that job any more."
RESULT_GONE = "That result is no longer stored."
NO_4K = "4K is only offered for Nano Banana images."
NO_RESULT = "That job has no finished image to work from."
ONLY_AN_IMAGE = "Only an image can be used for that."
NOT_ADMIN_SETTINGS = "Only this chat's admins can change its settings. Ask one of them."
NOT_ADMIN_USAGE = "Only this chat's admins can see everyone's usage."


def bar(progress: int, width: int = 10) -> str:
    filled = max(0, min(width, round(progress * width / 100)))
    return "▰" * filled + "▱" * (width - filled)


def short_prompt(prompt: str, limit: int = 200) -> str:
    prompt = " ".join(prompt.split())
    return prompt if len(prompt) <= limit else prompt[: limit - 1].rstrip() + "…"


def _name(job: Job, catalog: Catalog) -> str:
    spec = catalog.resolve(job.model)
    return spec.name if spec else job.model


def model_line(spec: ModelSpec) -> str:
    """One line of /models."""
    kind = "🎬" if spec.kind is Kind.VIDEO else "🖼"
    return f"{kind} {spec.code} — {spec.name}: {spec.description} (~${spec.price_usd:.2f})"


def progress_text(job: Job, catalog: Catalog) -> str:
    """The status line shown while a job runs."""
    name = _name(job, catalog)
    if job.state is JobState.RECEIVED and job.queue_position:
        return (
            f"⏳ In line for {name}: {ordinal(job.queue_position)} in this chat. "
            "It starts when a slot frees up."
        )
    if job.state is JobState.RECEIVED:
        return f"⏳ Queued on {name}…"
    if job.state is JobState.SUBMITTING:
        return f"⏳ Sending to {name}…"
    if job.state is JobState.QUEUED:
        return f"⏳ Waiting in {name}'s queue…"
    if job.state is JobState.RUNNING:
        return f"🎨 {name} {bar(job.progress)} {job.progress}%"
    if job.state is JobState.SUCCEEDED:
        return f"✅ {name} finished. Sending the result…"
    return failure_text(job, catalog)


def plural(n: int, word: str) -> str:
    """'1 job', '2 jobs'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _duration(seconds: float) -> str:
    return f"~{round(seconds)} s" if seconds < 90 else f"~{round(seconds / 60)} min"


def _expiry(seconds: float) -> str:
    """'45 s' under a minute (never '1 min' for 30 s), whole minutes from one up."""
    if round(seconds) < 60:
        return f"{max(round(seconds), 1)} s"
    return f"{round(seconds / 60)} min"


def confirm_text(job: Job, catalog: Catalog, timeout_s: float) -> str:
    """What a held video will cost and take, before the asker confirms it."""
    spec = catalog.get(job.model)
    return (
        f"🎬 {spec.name} {job.kind.value} for “{short_prompt(job.prompt, 80)}”: about "
        f"${job.price_usd or spec.price_usd:.2f}, usually ready in {_duration(spec.typical_s)}. "
        f"Press Confirm to start (only the asker can). This expires in {_expiry(timeout_s)}."
    )


def history_text(
    jobs: list[Job],
    catalog: Catalog,
    now: float,
    marks: Mapping[str, tuple[str, int]] | None = None,
) -> str:
    """/history: model, prompt, state and when, newest first. `marks`: the jobs that are
    session entries, as (theme, number) (SessionService.entry_numbers)."""
    if not jobs:
        return "You haven't made anything in this chat yet. Try /imagine or /video."
    lines = ["🕘 Your recent jobs here:"]
    for i, job in enumerate(jobs, start=1):
        line = (
            f"{i}. {_name(job, catalog)} · {job.state.value.replace('_', ' ')} · "
            f"{_ago(now - job.created_at)} · “{short_prompt(job.prompt, 60)}”"
        )
        mark = (marks or {}).get(job.id)
        lines.append(f"{line} · {history_mark(*mark)}" if mark else line)
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def result_caption(job: Job, catalog: Catalog) -> str:
    return f"{_name(job, catalog)} · “{short_prompt(job.prompt)}”"


def _money(usd: float | None) -> str:
    return f"${usd:.2f}" if usd else "the charge"


_SUBMIT_FAILURES = {
    "auth": "The image service is misconfigured right now, so nothing was made. "
    "You were not charged. Please tell the bot's operator.",
    "quota": "The image service is out of credit right now. You were not charged. "
    "Please try again later.",
    "connect": "I could not reach the image service. You were not charged. "
    "Please try again in a few minutes.",
    "rate_limited": "The image service is busy. You were not charged. "
    "Please try again in a minute.",
}


def failure_text(job: Job, catalog: Catalog) -> str:
    """What went wrong, whether it cost anything, and what to try next."""
    name = _name(job, catalog)
    what = "video" if job.kind is Kind.VIDEO else "image"
    detail = f": {job.error_message.rstrip('.')}." if job.error_message else "."
    # When the gateway's own words already say whether it cost anything, don't repeat it.
    not_charged = "" if "charged" in (job.error_message or "").lower() else " You were not charged."
    code = job.error_code or ""
    if job.state is JobState.REFUNDED:
        return (
            f"❌ {name} could not make this {what}{detail} "
            f"{_money(job.refunded_usd or job.price_usd)} was refunded. "
            "Try rewording the prompt or another model."
        )
    if job.state is JobState.TIMED_OUT:
        spec = catalog.resolve(job.model)
        within = f" within {round(spec.deadline_s / 60)} minutes" if spec else " in time"
        return (
            f"⌛ {name} did not finish{within}, so I stopped waiting. "
            "It may still be charged if it finishes late. Try again, or a faster model."
        )
    if job.state is JobState.INTERRUPTED:
        return (
            f"⚠️ I lost the answer while sending this {what} to {name}, so it may or may not "
            "have been charged. I won't resend it by myself; press Reroll or ask again if "
            "nothing arrives."
        )
    if job.state is JobState.REJECTED:
        return f"🚫 {job.error_message or REFUSED}"
    if code in _SUBMIT_FAILURES:
        return "❌ " + _SUBMIT_FAILURES[code]
    if code == "task_lost":
        return (
            f"❌ {name} lost track of this {what}. If you were charged, it should be "
            "refunded by the gateway. Please try again."
        )
    if code == "unavailable":
        return (
            f"❌ {name} had a problem starting this {what}{detail}{not_charged} "
            "Please try again in a minute."
        )
    if code == "bad_response":
        return (
            f"❌ {name} answered in a form I couldn't read{detail} If this cost anything, "
            "the bot's operator can check it with the job id. Please try again."
        )
    if code == "rejected":
        return (
            f"❌ {name} refused this {what}{detail}{not_charged} "
            "Try rewording the prompt or another model."
        )
    return (
        f"❌ {name} could not make this {what}{detail}{not_charged} "
        "Try rewording the prompt or another model."
    )


def model_not_allowed_text(name: str, allowed: list[str]) -> str:
    """A model this chat's admins did not allow; `allowed` are those of the same kind."""
    options = ", ".join(allowed) if allowed else "none of this kind"
    return f"This chat doesn't allow {name}. Allowed here: {options}."


def blocked_word_text(word: str) -> str:
    return f"Your prompt contains “{word}”, which this chat does not allow. Please rephrase it."


def format_wait(now: float) -> str:
    """When the daily counters reset, in words: 'at 00:00 UTC (in 3 h 12 min)'."""
    reset = datetime.fromtimestamp(day_start(now), UTC) + timedelta(days=1)
    left = max(int(reset.timestamp() - now), 60)
    hours, minutes = divmod(left // 60, 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"at 00:00 UTC (in {span})"


def limit_text(refusal: Refusal, kind: Kind, price_usd: float | None, now: float) -> str:
    """A request over one of the chat's (or the service's, or a session's) limits: which,
    and when it resets."""
    if refusal.limit.startswith("session_"):
        return session_limit_text(refusal, kind, price_usd)
    used = int(refusal.used)
    if refusal.limit == "user_unfinished":
        return (
            f"You have {plural(used, 'job')} going already, the most at once here. "
            "Try again when one of them finishes."
        )
    if refusal.limit == "user_daily":
        return (
            f"You've made {plural(used, kind.value)} today, the most allowed here. "
            f"You can go again {format_wait(now)}."
        )
    if refusal.limit == "chat_budget":
        return (
            f"This chat has used ${refusal.used:.2f} of its ${refusal.allowed:.2f} budget "
            f"for today, and this {kind.value} costs about ${price_usd or 0:.2f}. "
            f"The budget resets {format_wait(now)}."
        )
    return f"genrelay has reached its spending limit for today. It resets {format_wait(now)}."


def confirm_expired_text(minutes: int) -> str:
    """Why a held video nobody confirmed in time was not sent."""
    return (
        f"Nobody confirmed this within {plural(minutes, 'minute')}, so it was not sent. "
        "Nothing was charged."
    )


# -- cancel ----------------------------------------------------------------------------------

CANCELLED = "Cancelled. Nothing was sent, so nothing was charged."


def cancel_text(outcome: CancelOutcome) -> str:
    """What a Cancel button or /cancel did."""
    if isinstance(outcome, Cancelled):
        return CANCELLED
    if isinstance(outcome, AlreadyFinished):
        return "That job has already finished."
    if isinstance(outcome, AlreadyStarted):
        return (
            f"That job is already with {outcome.model_name} and can't be stopped; "
            "I'll still post the result when it's ready."
        )
    assert isinstance(outcome, NothingToCancel)
    return "You have nothing waiting or running here."


# -- settings and usage ----------------------------------------------------------------------

RULES_HINT = "Admins change one with /settings <name> <value>."


def setting_shown(name: str, value: object) -> str:
    """A setting's value as /settings shows it."""
    if name == "allowed_models" and not value:
        return "all"
    if name == "chat_budget_usd":
        return f"${value:.2f}" if value else "no budget"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ", ".join(value) if value else "none"
    return str(value)


def rules_text(rules: ChatRules, *, hint: str = RULES_HINT) -> str:
    """/settings: every rule of this chat, then how to change one (`hint`)."""
    lines = ["⚙️ Settings for this chat:"]
    for name in SETTING_NAMES:
        lines.append(f"• {name}: {setting_shown(name, getattr(rules, name))}")
    lines.append(hint)
    return "\n".join(lines)


def setting_changed_text(changed: SettingChanged) -> str:
    return f"✅ {changed.name}: {setting_shown(changed.name, changed.value)}"


def setting_refusal_text(refusal: SettingRefusal) -> str:
    """Why a setting cannot take what an admin typed, with what it takes."""
    name = refusal.name
    if isinstance(refusal, UnknownSetting):
        return f"There is no setting “{name}”. Settings: {', '.join(refusal.names)}."
    if isinstance(refusal, WrongKindModel):
        return f"{name} must be a {refusal.kind.value} model: {', '.join(refusal.options)}."
    if isinstance(refusal, UnknownModel):
        return f"I don't know the model “{refusal.model}”."
    if isinstance(refusal, NotWhole):
        return (
            f"{name} takes a whole number from {refusal.low} to {refusal.high:,}, "
            f"e.g. {name} {refusal.example}."
        )
    if isinstance(refusal, BadBudget):
        return (
            f"{name} takes an amount in USD from 0.01 to {refusal.high_usd:,} with at "
            f"most 2 decimals, or 0 for no budget, e.g. {name} 12.50."
        )
    if isinstance(refusal, NotAChoice):
        return f"{name} takes {' or '.join(refusal.choices)}."
    assert isinstance(refusal, NotOnOff)
    return f"{name} takes on or off."


def usage_text(report: UsageReport) -> str:
    """/usage: what the asker made and spent here today, and when the limits reset."""
    lines = [
        f"📊 Today you made {report.images} of {report.images_allowed} images and "
        f"{report.videos} of {report.videos_allowed} videos here, "
        f"spending ${report.spend_usd:.2f}."
    ]
    if report.budget_usd:
        lines.append(
            f"This chat has ${report.budget_left_usd:.2f} of its ${report.budget_usd:.2f} "
            "daily budget left."
        )
    lines.append(f"Limits reset {format_wait(report.now)}.")
    return "\n".join(lines)


def chat_usage_text(usage: ChatUsage, *, top: int = 10) -> str:
    """/usage chat: today's totals here, then the `top` spenders."""
    if not usage.rows:
        return "📊 Nobody has made anything here today."
    lines = [f"📊 Today in this chat: {plural(usage.jobs, 'job')}, ${usage.spend_usd:.2f}."]
    for i, r in enumerate(usage.rows[:top], start=1):
        lines.append(
            f"{i}. {r.user_name or r.user_id}: {plural(r.jobs, 'job')}, ${r.spend_usd:.2f}"
        )
    return "\n".join(lines)
