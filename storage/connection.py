"""The SQLite connection a store's queries share: one per process, its writes serialised in
the process, each in BEGIN IMMEDIATE, and waited for (with backoff) while another process
holds the file's lock. SqliteJobStore (sqlite.py) is built on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from bot.constants import STORE_BUSY_BACKOFF_S, STORE_BUSY_CAP_S

__all__ = ["SqliteConnection"]

log = logging.getLogger(__name__)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock we need."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


class SqliteConnection:
    """`db` (once opened by the store) and `transaction()`, which every write goes through.
    A write waits `busy_timeout_ms` for another process's lock, then tries again with
    backoff for as long as it takes: a busy file slows the service down, never stops it."""

    def __init__(self, *, busy_timeout_ms: int) -> None:
        self.busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._busy_since: float | None = None  # when the current busy spell began
        self.writes = 0  # committed write transactions, for benchmarks
        self.statements = 0  # after count_statements(): SQL statements run (BEGIN, COMMIT too)

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the job store is not open")
        return self._db

    async def count_statements(self) -> None:
        """Count the statements run from now on in `statements` (benchmarks). Off unless
        asked: sqlite3 hands each one's text, parameters filled in, to a callback."""
        await self.db.set_trace_callback(self._ran)

    def _ran(self, sql: str) -> None:
        """sqlite3's trace callback (on the connection's thread): one statement ran."""
        self.statements += 1

    async def _retry_busy(self, step: Callable[[], Awaitable[Any]]) -> Any:
        """Run `step`; while another process holds the lock (past busy_timeout) wait and try
        again with backoff, logging once per busy spell (and once when it is over)."""
        attempt = 0
        while True:
            try:
                result = await step()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                if self._busy_since is None:
                    self._busy_since = time.monotonic()
                    log.warning(
                        "the job store is busy (%s): another process holds its lock;"
                        " waiting for it, work goes on slower",
                        exc,
                    )
                await asyncio.sleep(min(STORE_BUSY_BACKOFF_S * 2**attempt, STORE_BUSY_CAP_S))
                attempt += 1
                continue
            if self._busy_since is not None:
                log.info(
                    "the job store is free again after %.1f s", time.monotonic() - self._busy_since
                )
                self._busy_since = None
            return result

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE. The statement runs on in the connection's thread when its caller
        is cancelled (a poll called off, say): then wait for it and undo it, so the shared
        connection is never left inside a transaction nobody will end."""
        begin = asyncio.ensure_future(self.db.execute("BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await begin
                await self.db.execute("ROLLBACK")
            raise

    async def _commit(self) -> None:
        await self.db.execute("COMMIT")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, serialised in this process.
        BEGIN IMMEDIATE takes the file's write lock up front (no deadlock between
        processes), so it is the one statement that waits for another process."""
        async with self._write_lock:
            await self._retry_busy(self._begin)
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            # COMMIT answers SQLITE_BUSY while a statement is still active on this
            # connection (a read another task has open) or a checkpoint holds the file; the
            # transaction stays open and the COMMIT can be asked again.
            await self._retry_busy(self._commit)
            self.writes += 1
