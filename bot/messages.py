"""Every sentence a chat user reads about a job, in one place (adapters only lay it out)."""

from __future__ import annotations

from bot.catalog import Catalog, ModelSpec
from bot.models import Job, JobState, Kind

__all__ = [
    "bar",
    "failure_text",
    "model_line",
    "progress_text",
    "result_caption",
    "short_prompt",
]


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
        return f"🚫 {job.error_message or 'That request was refused.'}"
    if code in _SUBMIT_FAILURES:
        return "❌ " + _SUBMIT_FAILURES[code]
    if code == "task_lost":
        return (
            f"❌ {name} lost track of this {what}. If you were charged, it should be "
            "refunded by the gateway. Please try again."
        )
    if code == "unavailable":
        return (
            f"❌ {name} had a problem starting this {what}{detail} You were not charged. "
            "Please try again in a minute."
        )
    if code == "rejected":
        return (
            f"❌ {name} refused this {what}{detail} You were not charged. "
            "Try rewording the prompt or another model."
        )
    return (
        f"❌ {name} could not make this {what}{detail} You were not charged. "
        "Try rewording the prompt or another model."
    )
