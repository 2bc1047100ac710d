"""What the job stores' queries need of an engine. The queries (jobs.py, community.py,
sessions.py, inbox.py) are written once, with `?` placeholders, against `Db` (a connection,
or one transaction on it); the few words of SQL that differ between SQLite and PostgreSQL
are a store's `Dialect`."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

__all__ = ["POSTGRES", "SQLITE", "Cursor", "Db", "Dialect", "Execution", "Row"]


@dataclass(frozen=True, slots=True)
class Dialect:
    seq: str  # a column in insertion order (ties of created_at / started_at)
    due_poll: str  # what follows `FROM jobs` to walk the due-poll partial index (migration 1)
    state_unindexed: str  # `state`, written so the planner does not walk its index
    cross_join: str  # a join that keeps the written order of its two tables
    user_name: str  # the user's name in a job's `origin` JSON
    skip_locked: str  # ends a claim's SELECT: rows another transaction is claiming are skipped


SQLITE = Dialect(
    seq="rowid",
    # Named: with bound parameters (or beside the state index) the planner walks every
    # unfinished job and sorts them on each claim; this seeks instead.
    due_poll="INDEXED BY jobs_due_poll WHERE state IN ('received', 'queued', 'running')",
    state_unindexed="+state",
    cross_join="CROSS JOIN",
    user_name="json_extract(origin, '$.user_name')",
    skip_locked="",  # BEGIN IMMEDIATE: one writer at a time, nothing to skip
)
POSTGRES = Dialect(
    seq="seq",  # a BIGSERIAL column (pg_migrations.py)
    due_poll="WHERE state IN ('received', 'queued', 'running')",  # implies the partial index
    state_unindexed="state",
    cross_join="JOIN",
    user_name="(origin::jsonb ->> 'user_name')",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)


class Row(Protocol):
    """A result row, read by column name or by position."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    async def fetchone(self) -> Any: ...

    async def fetchall(self) -> Iterable[Any]: ...


class Execution(Protocol):
    """A statement run: awaited it is its cursor; `async with` closes the cursor after."""

    def __await__(self) -> Generator[Any, None, Cursor]: ...

    async def __aenter__(self) -> Cursor: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any: ...


class Db(Protocol):
    """Where a query runs: the store's connection, or one transaction on it."""

    def execute(self, sql: str, parameters: Iterable[Any] = ..., /) -> Execution: ...

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> Execution: ...
