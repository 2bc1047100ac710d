"""The words of a chat's rules: a request they refuse (a model or a word the chat does not
allow, a limit reached, and when the counters reset), its settings (/settings) and what its
people used (/usage). Re-exported by bot/messages.py (every sentence a chat user reads is
reachable there); kept in a module of their own so neither grows past one screenful of
nouns. Imports nothing of bot/messages.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.community import SETTING_NAMES, ChatRules, Refusal, day_start
from bot.models import Kind
from bot.outcomes import (
    BadBudget,
    ChatUsage,
    NotAChoice,
    NotOnOff,
    NotWhole,
    SettingChanged,
    SettingRefusal,
    UnknownModel,
    UnknownSetting,
    UsageReport,
    WrongKindModel,
)
from bot.session_messages import session_limit_text

__all__ = [
    "RULES_HINT",
    "blocked_word_text",
    "chat_usage_text",
    "format_wait",
    "limit_text",
    "model_not_allowed_text",
    "plural",
    "rules_text",
    "setting_changed_text",
    "setting_refusal_text",
    "setting_shown",
    "usage_text",
]

RULES_HINT = "Admins change one with /settings <name> <value>."


def plural(n: int, word: str) -> str:
    """'1 job', '2 jobs'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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


# -- settings and usage ----------------------------------------------------------------------


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
