"""The seams of the core: what it needs from storage, chat platforms and time."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from bot.models import Job, JobState, Lease, Replica
from bot.session_store import SessionStore
from bot.sessions import Recap, SessionFigures

__all__ = [
    "ChatAdapter",
    "Clock",
    "CommunityStore",
    "CoreStore",
    "DeliveryNotices",
    "DeliverySink",
    "InboxStore",
    "JobStore",
    "LeaseStore",
    "Quota",
    "Refusal",
    "ResultFile",
    "SessionSink",
    "SessionStore",
    "Sharded",
    "SystemClock",
    "UsageRow",
]


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class JobStore(Protocol):
    async def create(self, job: Job) -> None: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def save(self, job: Job, *, expect: Sequence[JobState] | None = None) -> bool:
        """Write the whole row; when `expect` is given, only if the stored state is one of it."""
        ...

    async def set_status_message(self, job_id: str, message_id: str) -> None: ...

    async def find_request(self, request_key: str) -> Job | None:
        """The job made for this request key, if any (create/admit refuse a second one
        with DuplicateRequest)."""
        ...

    async def claim_status(self, job_id: str, now: float) -> bool:
        """Record, before sending it, that a status message is being sent; False when the
        job has one or one was being sent already (then never send another)."""
        ...

    async def release_status(self, job_id: str) -> None:
        """Undo claim_status when the platform surely did not take the message."""
        ...

    async def owe_status_drop(self, job_id: str, now: float) -> None:
        """Record that the job's status message is to be deleted (it waits for budget)."""
        ...

    async def status_dropped(self, job_id: str) -> None: ...

    async def owed_status_drops(self, platform: str, limit: int = 500) -> list[Job]: ...

    async def claim_due_polls(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Jobs to submit or poll whose time has come; pushes their next poll `lease_s` ahead."""
        ...

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_s: float, *, platforms: Collection[str]
    ) -> list[Job]:
        """Pending deliveries due now for these platforms (the ones this process has a sink
        for); pushes their next attempt `lease_s` ahead, so no one else takes them."""
        ...

    async def poll_soon(self, job_id: str, at: float) -> bool:
        """Make a queued or running job due at `at` unless it is due sooner (a webhook)."""
        ...

    async def find_by_webhook_token(self, token: str) -> Job | None: ...

    async def recover(
        self, now: float, *, owner_alive: Callable[[str], bool], reschedule: bool = True
    ) -> list[Job]:
        """`submitting` jobs whose owner process is gone become `interrupted` (returned);
        with `reschedule` (a restart with no other replica running), every other unfinished
        job and delivery becomes due now too."""
        ...

    async def next_due(self, after: float = float("-inf")) -> float | None:
        """The earliest next poll time after `after` of a job the tracker follows."""
        ...

    async def recent_durations(self, since: float, per_model: int) -> dict[str, list[float]]:
        """Seconds from submit to end of recent succeeded jobs, newest first, by model."""
        ...

    async def recent(
        self,
        limit: int,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
    ) -> list[Job]: ...


@dataclass(frozen=True, slots=True)
class Quota:
    """The limits one new job must fit, with the moment 'today' began."""

    since: float
    user_unfinished: int | None = None
    user_daily: int | None = None  # jobs of this kind per user per day in this chat
    chat_budget_usd: float | None = None
    global_budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    # user_unfinished, user_daily, chat_budget, global_budget; a running session's:
    # session_video (videos are off), session_per_person, session_budget
    limit: str
    used: float
    allowed: float


@dataclass(frozen=True, slots=True)
class UsageRow:
    user_id: str
    user_name: str | None
    jobs: int
    spend_usd: float


class CommunityStore(JobStore, Protocol):
    """The queries shared chats need; limits are checked and the job inserted atomically."""

    async def admit(self, job: Job, quota: Quota) -> Refusal | None: ...

    async def over_limit(self, job: Job, quota: Quota) -> Refusal | None: ...

    async def queue_positions(self, platform: str, scope_id: str) -> dict[str, int]: ...

    async def scope_load(self, platform: str, scope_id: str, now: float) -> tuple[int, int]: ...

    async def release_hold(self, job_id: str, now: float) -> bool: ...

    async def stop_waiting(self, job_id: str, now: float, *, code: str, message: str) -> bool: ...

    async def expired_holds(self, now: float) -> list[str]: ...

    async def chat_settings(self, platform: str, scope_id: str) -> dict[str, Any]: ...

    async def save_chat_settings(
        self, platform: str, scope_id: str, values: dict[str, Any], *, by: str, now: float
    ) -> None: ...

    async def usage_by_user(self, platform: str, scope_id: str, since: float) -> list[UsageRow]: ...

    async def spend(
        self, since: float, *, platform: str | None = None, scope_id: str | None = None
    ) -> float: ...

    async def user_history(
        self, platform: str, scope_id: str, user_id: str, limit: int
    ) -> list[Job]: ...

    async def cancellable(self, platform: str, scope_id: str, user_id: str) -> list[Job]: ...


class InboxStore(Protocol):
    """Platform updates kept from their fetch until their handling finished."""

    async def inbox_add(
        self, source: str, items: Sequence[tuple[int, str]], now: float
    ) -> list[int]: ...

    async def inbox_done(self, source: str, item_ids: Sequence[int], now: float) -> None: ...

    async def inbox_pending(self, source: str) -> list[tuple[int, str]]: ...

    async def inbox_prune(self, before: float) -> int: ...


class LeaseStore(Protocol):
    """Named leases (one holder at a time, until it expires unless renewed) and each
    process's heartbeat (storage/leases.py)."""

    async def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Atomically: take it when free, expired or already `holder`'s."""
        ...

    async def take_lease(
        self, name: str, dead_holder: str, holder: str, now: float, ttl: float
    ) -> bool: ...

    async def renew_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Only while still `holder`'s and not expired; False otherwise (it is lost)."""
        ...

    async def release_lease(self, name: str, holder: str) -> bool: ...

    async def release_leases(self, holder: str) -> int: ...

    async def leases(self) -> list[Lease]: ...

    async def heartbeat(self, replica: str, now: float, info: str) -> None: ...

    async def restart_replica(self, replica: str, now: float, info: str) -> None: ...

    async def replicas(self, since: float = 0.0) -> list[Replica]: ...

    async def forget_replica(self, replica: str) -> None: ...


class CoreStore(CommunityStore, InboxStore, SessionStore, LeaseStore, Protocol):
    """The store the core runs on, as the composition root hands it over unopened: entering
    opens it, leaving closes it."""

    async def ping(self) -> bool: ...

    async def count_by_model_state(self) -> list[tuple[str, str, int]]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ResultFile:
    """A finished file, downloaded by us, ready to upload to a chat."""

    url: str  # where the gateway had it (expires)
    path: Path | None  # our copy; None when it was too large to fetch
    size: int | None
    mime: str
    filename: str


class DeliverySink(Protocol):
    """How a chat platform shows progress and results. Implemented by each adapter."""

    platform: str

    async def progress(self, job: Job) -> str | None:
        """Show the job's progress; returns the status message id when it created one."""
        ...

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        """Post a terminal job (success or failure) to its origin. Raise DeliveryError to retry."""
        ...


@runtime_checkable
class DeliveryNotices(Protocol):
    """A sink that can say in the chat how a delivery stands when it does not go through at
    once, so a job's status message never stays "waiting" for a job that has ended. Both
    are best effort: they never raise for a platform failure."""

    async def delivery_delayed(self, job: Job) -> None:
        """The result is there but could not be posted yet; it is tried again later."""
        ...

    async def undeliverable(self, job: Job) -> None:
        """The notifier gave up on posting the job's outcome here (it stays in the store)."""
        ...


@runtime_checkable
class Sharded(Protocol):
    """A chat adapter whose platform connection is split in shards (Discord's gateway with
    DISCORD_SHARD_COUNT): /readyz lists them."""

    @property
    def shards(self) -> Mapping[int, str]:
        """Each shard it runs and its state (`ready`, `connecting`, `disconnected`); empty
        when unsharded."""
        ...


class ChatAdapter(Protocol):
    """A chat platform's adapter as `genrelay run` starts it and /readyz reports it.

    Entering connects and registers its DeliverySink; it raises ConfigError when its
    settings cannot work (retrying cannot help) and PlatformUnavailable when the platform
    did not answer (it may later). Leaving disconnects. `__init__` does no I/O."""

    @property
    def platform(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def stop_intake(self) -> None:
        """The service is stopping: take no new requests, keep delivering."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SessionSink(Protocol):
    """How a chat platform shows creative sessions. Implemented by each adapter, registered
    with `Core.add_session_sink`; the core's session loop calls it (bot/session_keeper.py)."""

    platform: str

    async def show_card(self, figures: SessionFigures) -> str | None:
        """Post the session's card, or edit it when `figures.session.card_message_id` is
        set (pin it where the bot may). Returns the message id when it posted one. It is
        called when the figures change (at most every CARD_INTERVAL_S) and once more when
        the session has ended (`figures.session.open` is False). Raise to try again later."""
        ...

    async def post_recap(self, recap: Recap) -> None:
        """Post the recap in the session's place (the top entries as one album). Raise
        DeliveryError to try again later, PermanentDeliveryError when that cannot help."""
        ...
