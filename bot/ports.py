"""The seams of the core: what it needs from storage, chat platforms and time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.models import Job, JobState

__all__ = ["Clock", "DeliverySink", "JobStore", "ResultFile", "SystemClock"]


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

    async def claim_due_polls(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Jobs to submit or poll whose time has come; pushes their next poll `lease_s` ahead."""
        ...

    async def claim_due_deliveries(self, now: float, limit: int, lease_s: float) -> list[Job]: ...

    async def recover(self, now: float, *, owner_alive: Callable[[str], bool]) -> list[Job]:
        """After a restart: `submitting` jobs whose owner process is gone become
        `interrupted` (returned); every other unfinished job and delivery becomes due now."""
        ...

    async def next_due(self) -> float | None: ...

    async def recent(
        self,
        limit: int,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
    ) -> list[Job]: ...


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
