"""Every sentence a chat user reads from the core, in one place: plain functions from the
core's values (jobs, outcomes, refusals, figures) to words. Adapters lay them out; what only
one platform says lives in its texts module."""

from __future__ import annotations

from collections.abc import Mapping

from bot.catalog import Catalog, ModelSpec
from bot.models import Job, JobState, Kind
from bot.outcomes import (
    AlreadyFinished,
    AlreadyStarted,
    Cancelled,
    CancelOutcome,
    NothingToCancel,
)
from bot.refusal_messages import *  # noqa: F403 (the catalog's refusals, named below)
from bot.refusal_messages import __all__ as _refusal_words
from bot.rules_messages import *  # noqa: F403 (the words of a chat's rules, named below)
from bot.rules_messages import __all__ as _rules_words
from bot.rules_messages import plural
from bot.session_messages import *  # noqa: F403 (the words of creative sessions, named below)
from bot.session_messages import __all__ as _session_words
from bot.session_messages import history_mark

__all__ = [
    "CANCELLED",
    "MODEL_GONE",
    "NOT_ADMIN_SETTINGS",
    "NOT_ADMIN_USAGE",
    "NOT_HELD",
    "NOT_YOURS_CANCEL",
    "NOT_YOURS_CONFIRM",
    "NOT_YOURS_RESEND",
    "NO_4K",
    "NO_IMAGE_ANSWERED",
    "NO_RESULT",
    "NO_TASK_ID",
    "ONLY_AN_IMAGE",
    "OTHER_CHAT",
    "REFUSED",
    "RESULT_GONE",
    "UNKNOWN_JOB",
    "bar",
    "cancel_text",
    "confirm_expired_text",
    "confirm_text",
    "failure_text",
    "history_text",
    "model_line",
    "ordinal",
    "progress_text",
    "resend_text",
    "result_caption",
    "short_prompt",
    *_refusal_words,
    *_rules_words,
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


# Why a job failed, in its error message (failure_text quotes it): our words where the
# gateway gave none.
MODEL_GONE = "This model is gone."
NO_TASK_ID = "The gateway gave no task id to follow"
NO_IMAGE_ANSWERED = "The model answered without an image."


def resend_text(detail: str) -> str:
    """A job whose reference image could not be handed on (`detail`: what went wrong)."""
    return f"{detail} Please send it again"


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
