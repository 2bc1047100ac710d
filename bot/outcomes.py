"""What the use cases answer, as values: outcomes, usage figures and refusals. The words for
each are `bot/messages.py`'s (or a platform's texts); the core hands out only these."""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import Job, Kind
from bot.ports import UsageRow  # one person's jobs and spend, as the store counts them

__all__ = [
    "AfterFailure",
    "AlreadyFinished",
    "AlreadyStarted",
    "BadBudget",
    "CancelOutcome",
    "Cancelled",
    "ChatUsage",
    "NotAChoice",
    "NotOnOff",
    "NotWhole",
    "NothingRecorded",
    "NothingToCancel",
    "RecordUnknown",
    "Recorded",
    "SettingChanged",
    "SettingRefusal",
    "SettingValue",
    "UnknownModel",
    "UnknownSetting",
    "UsageReport",
    "UsageRow",
    "WrongKindModel",
]

# -- cancel ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The job was stopped before anything was sent: nothing was charged."""

    job_id: str


@dataclass(frozen=True, slots=True)
class AlreadyFinished:
    """The job had ended already; there was nothing to stop."""

    job_id: str


@dataclass(frozen=True, slots=True)
class AlreadyStarted:
    """The job is with the model (`model_name`) and cannot be stopped; its result still comes."""

    job_id: str
    model_name: str


@dataclass(frozen=True, slots=True)
class NothingToCancel:
    """/cancel found no job of the asker's waiting or running in the chat."""


CancelOutcome = Cancelled | AlreadyFinished | AlreadyStarted | NothingToCancel

# -- after an unexpected failure of a request that starts a job --------------------------------


@dataclass(frozen=True, slots=True)
class NothingRecorded:
    """No job was recorded for the request (or only its refusal): nothing was started."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """The request's job was recorded before the failure: it goes on, its result still comes."""

    job: Job


@dataclass(frozen=True, slots=True)
class RecordUnknown:
    """Whether a job was recorded cannot be told (the store did not answer)."""


AfterFailure = NothingRecorded | Recorded | RecordUnknown

# -- usage -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageReport:
    """/usage: what the asker made and spent today in this chat, against its limits."""

    images: int
    images_allowed: int
    videos: int
    videos_allowed: int
    spend_usd: float
    budget_usd: float  # the chat's daily budget; 0: none
    budget_left_usd: float
    now: float  # when it was taken: the limits reset at the next midnight UTC


@dataclass(frozen=True, slots=True)
class ChatUsage:
    """/usage chat: everyone's jobs and spend today, biggest spender first."""

    rows: tuple[UsageRow, ...]
    jobs: int
    spend_usd: float


# -- settings --------------------------------------------------------------------------------

SettingValue = str | int | float | bool | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SettingChanged:
    """An admin set `name` to `value` (as it is stored)."""

    name: str
    value: SettingValue


@dataclass(frozen=True, slots=True)
class SettingRefusal:
    """A value an admin typed that a setting cannot take; `name` as it was read."""

    name: str


@dataclass(frozen=True, slots=True)
class UnknownSetting(SettingRefusal):
    names: tuple[str, ...]  # the settings there are


@dataclass(frozen=True, slots=True)
class NotWhole(SettingRefusal):
    low: int
    high: int
    example: int


@dataclass(frozen=True, slots=True)
class BadBudget(SettingRefusal):
    high_usd: int


@dataclass(frozen=True, slots=True)
class WrongKindModel(SettingRefusal):
    kind: Kind
    options: tuple[str, ...]  # the models of that kind


@dataclass(frozen=True, slots=True)
class UnknownModel(SettingRefusal):
    model: str


@dataclass(frozen=True, slots=True)
class NotOnOff(SettingRefusal):
    pass


@dataclass(frozen=True, slots=True)
class NotAChoice(SettingRefusal):
    choices: tuple[str, ...]  # the values the setting takes
