"""Rules for shared chats: limits, budgets, fair turns, confirmation, chat settings. One
implementation for every platform; it answers in values, and bot/messages.py words them."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.catalog import Catalog
from bot.config import Settings
from bot.constants import MAX_CHAT_BUDGET_USD, MAX_JOBS_AT_ONCE, MAX_JOBS_PER_DAY
from bot.models import Kind, Origin
from bot.outcomes import (
    BadBudget,
    NotAChoice,
    NotOnOff,
    NotWhole,
    SettingRefusal,
    UnknownModel,
    UnknownSetting,
    WrongKindModel,
)
from bot.ports import Quota, Refusal, UsageRow  # the store's values, named with its seam
from bot.validation import clean_text

__all__ = [
    "SESSION_STARTERS",
    "SETTING_NAMES",
    "ChatRules",
    "Parsed",
    "Quota",
    "Refusal",
    "UsageRow",
    "day_start",
    "is_operator",
    "parse_setting",
    "setting_key",
]


@dataclass(frozen=True, slots=True)
class ChatRules:
    image_model: str
    video_model: str
    allowed_models: tuple[str, ...]  # empty: every model
    user_jobs_at_once: int
    user_images_per_day: int
    user_videos_per_day: int
    chat_jobs_at_once: int
    chat_budget_usd: float  # 0: no budget
    video_confirm: bool
    blocked_words: tuple[str, ...]
    session_starters: str = "admins"  # who may start a creative session: admins, everyone

    @classmethod
    def defaults(cls, settings: Settings) -> ChatRules:
        return cls(
            image_model=settings.default_image_model,
            video_model=settings.default_video_model,
            allowed_models=(),
            user_jobs_at_once=settings.user_concurrent_jobs,
            user_images_per_day=settings.user_daily_images,
            user_videos_per_day=settings.user_daily_videos,
            chat_jobs_at_once=settings.chat_concurrent_jobs,
            chat_budget_usd=settings.chat_daily_budget_usd,
            video_confirm=settings.video_needs_confirmation,
            blocked_words=(),
        )

    def merged(self, stored: dict[str, Any]) -> ChatRules:
        known = {f.name for f in dataclasses.fields(self)}
        values: dict[str, Any] = {}
        for key, value in stored.items():
            if key in known and _fits(key, value):
                values[key] = tuple(value) if isinstance(value, list) else value
        return dataclasses.replace(self, **values)

    def model_for(self, kind: Kind) -> str:
        return self.image_model if kind is Kind.IMAGE else self.video_model

    def daily_limit(self, kind: Kind) -> int:
        return self.user_images_per_day if kind is Kind.IMAGE else self.user_videos_per_day

    def blocked_word_in(self, prompt: str) -> str | None:
        words = prompt.lower()
        return next((w for w in self.blocked_words if w and w.lower() in words), None)


SETTING_NAMES: dict[str, str] = {
    "image_model": "model for /imagine",
    "video_model": "model for /video",
    "allowed_models": "models people may pick (comma list, or all)",
    "user_jobs_at_once": "jobs one person may have going at once",
    "user_images_per_day": "images per person per day",
    "user_videos_per_day": "videos per person per day",
    "chat_jobs_at_once": "jobs this chat runs at once; more wait their turn",
    "chat_budget_usd": "daily spend budget in USD (0 = none)",
    "video_confirm": "videos need the asker's Confirm (on/off)",
    "blocked_words": "words that refuse a prompt (comma list, or none)",
    "session_starters": "who may start a /session: admins or everyone",
}
SESSION_STARTERS = ("admins", "everyone")


# Whole-number settings: (lowest, highest, an example).
_WHOLE: dict[str, tuple[int, int, int]] = {
    "user_jobs_at_once": (1, MAX_JOBS_AT_ONCE, 2),
    "user_images_per_day": (0, MAX_JOBS_PER_DAY, 50),
    "user_videos_per_day": (0, MAX_JOBS_PER_DAY, 10),
    "chat_jobs_at_once": (1, MAX_JOBS_AT_ONCE, 3),
}
_WHOLE_RE = re.compile(r"\+?[0-9]{1,12}")  # ASCII digits only: no "1e9", "inf", "５"
_USD_RE = re.compile(r"\$?([0-9]{0,12})(?:\.([0-9]*))?")

# A setting's value as parsed and stored (lists as lists: the store keeps JSON).
Parsed = str | int | float | bool | list[str]


def _whole(name: str, value: str) -> int | NotWhole:
    low, high, example = _WHOLE[name]
    n = int(value) if _WHOLE_RE.fullmatch(value) else None
    if n is None or not low <= n <= high:
        return NotWhole(name, low, high, example)
    return n


def _usd(name: str, value: str) -> float | BadBudget:
    match = _USD_RE.fullmatch(value.replace(" ", ""))
    if match is None or not (match[1] or match[2]) or len(match[2] or "") > 2:
        return BadBudget(name, MAX_CHAT_BUDGET_USD)
    cents = int(match[1] or 0) * 100 + int((match[2] or "").ljust(2, "0"))
    if cents > MAX_CHAT_BUDGET_USD * 100:
        return BadBudget(name, MAX_CHAT_BUDGET_USD)
    return cents / 100


def _fits(name: str, value: Any) -> bool:
    """Whether a stored value is one /settings could have saved (older versions took any
    number); one that is not falls back to the default."""
    if name in _WHOLE:
        low, high, _ = _WHOLE[name]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if name == "chat_budget_usd":
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_CHAT_BUDGET_USD  # NaN fails both
        )
    if name == "session_starters":
        return value in SESSION_STARTERS
    return True


def setting_key(name: str) -> str:
    """A setting's name as an admin typed it, read the way /settings reads it."""
    return clean_text(name).strip().lower().replace("-", "_")


def parse_setting(name: str, value: str, catalog: Catalog) -> Parsed | SettingRefusal:
    """A value for `name` from what an admin typed, or why the setting cannot take it."""
    name = setting_key(name)
    value = clean_text(value).strip()
    if name not in SETTING_NAMES:
        return UnknownSetting(name, tuple(SETTING_NAMES))
    if name in ("image_model", "video_model"):
        spec = catalog.resolve(value)
        kind = Kind.IMAGE if name == "image_model" else Kind.VIDEO
        if spec is None or spec.kind is not kind:
            return WrongKindModel(name, kind, tuple(s.code for s in catalog.all(kind)))
        return spec.code
    if name == "allowed_models":
        if value.lower() in ("all", "*", ""):
            return []
        codes = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            spec = catalog.resolve(part)
            if spec is None:
                return UnknownModel(name, part)
            codes.append(spec.code)
        return codes
    if name == "blocked_words":
        if value.lower() in ("none", "-", ""):
            return []
        return [w.strip().lower() for w in value.split(",") if w.strip()]
    if name == "video_confirm":
        lowered = value.lower()
        if lowered in ("on", "yes", "true", "1"):
            return True
        if lowered in ("off", "no", "false", "0"):
            return False
        return NotOnOff(name)
    if name == "chat_budget_usd":
        return _usd(name, value)
    if name == "session_starters":
        lowered = value.lower()
        if lowered in ("admins", "admin"):
            return "admins"
        if lowered in ("everyone", "all", "anyone"):
            return "everyone"
        return NotAChoice(name, SESSION_STARTERS)
    return _whole(name, value)


def day_start(now: float) -> float:
    """Midnight UTC of the day `now` is in: daily limits and budgets reset then."""
    d = datetime.fromtimestamp(now, UTC)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def is_operator(origin: Origin, operator_ids: str) -> bool:
    for item in filter(None, (p.strip() for p in operator_ids.split(","))):
        platform, _, uid = item.rpartition(":")
        if uid == origin.user_id and platform in ("", origin.platform):
            return True
    return False
