"""The job store on SQLite: one connection, WAL, synchronous=FULL, writes in BEGIN IMMEDIATE."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.config import SQLITE_BUSY_TIMEOUT_MS
from storage.community import CommunityQueries
from storage.connection import SqliteConnection
from storage.dialect import SQLITE, Db
from storage.inbox import InboxQueries
from storage.jobs import JobQueries
from storage.leases import LeaseQueries
from storage.migrations import migrate, schema_version
from storage.sessions import SessionQueries

__all__ = ["SqliteJobStore"]

log = logging.getLogger(__name__)


class SqliteJobStore(
    SqliteConnection, JobQueries, SessionQueries, CommunityQueries, InboxQueries, LeaseQueries
):
    """`JobStore` on one SQLite file. Use as an async context manager. Its connection and
    write transactions are connection.py's, its schema migrations.py's, its rows rows.py's,
    its queries jobs.py's, community.py's, sessions.py's and inbox.py's.

    Several processes may share the file (`genrelay run` and any number of `generate`):
    a write waits `busy_timeout_ms` for another process's lock, then tries again with
    backoff for as long as it takes, so a busy file slows the service down, never stops it.

    Which jobs this process claims (to submit, poll or deliver), by `owner`:
    - `only_owner` set (a `generate` process): only its own console jobs;
    - else, with `owner_alive` (`run`): every job but the console jobs of a live process
      (a `generate` that is still waiting for them);
    - neither: every job.
    A console job whose owner is empty counts as a dead process's."""

    dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        default_chat_concurrency: int = 1_000_000,
        only_owner: str | None = None,
        owner_alive: Callable[[str], bool] | None = None,
        claimer: str | None = None,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    ) -> None:
        super().__init__(busy_timeout_ms=busy_timeout_ms)
        self.path = str(path)
        self.default_chat_concurrency = default_chat_concurrency
        self.only_owner = only_owner
        self.owner_alive = owner_alive
        self.claimer = claimer  # written on the jobs this process claims (claimed_by)

    async def __aenter__(self) -> SqliteJobStore:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            self._db.row_factory = aiosqlite.Row
            # These two PRAGMAs answer a row: their statements stay open until their cursors
            # are closed, and an open statement makes every COMMIT on the connection fail
            # ("SQL statements in progress") until the garbage collector frees the cursor.
            busy = await self._db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            await busy.close()
            wal = await self._retry_busy(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            await wal.close()
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            if self.owner_alive is not None:
                alive = self.owner_alive
                await self._db.create_function(
                    "owner_alive", 1, lambda owner: bool(owner) and alive(owner)
                )
            await migrate(self)
        except BaseException:
            await self._db.close()
            self._db = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        return await schema_version(self.db)

    async def _lock(self, db: Db, key: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this transaction the only writer."""

    async def _reach(self, db: Db) -> tuple[str, tuple[Any, ...]]:
        """The jobs this process may claim, as a WHERE condition (see the class doc)."""
        if self.only_owner is not None:
            return "(platform = 'console' AND owner = ?)", (self.only_owner,)
        if self.owner_alive is not None:
            return "(platform <> 'console' OR NOT owner_alive(owner))", ()
        return "1 = 1", ()
