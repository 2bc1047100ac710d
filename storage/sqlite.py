"""The job store on SQLite: one connection, WAL, synchronous=FULL, writes in BEGIN IMMEDIATE."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.config import SQLITE_BUSY_TIMEOUT_MS
from bot.errors import DuplicateRequest
from bot.models import TERMINAL_STATES, Delivery, Job, JobState
from storage.community import CommunityQueries
from storage.connection import SqliteConnection
from storage.inbox import InboxQueries
from storage.migrations import migrate, schema_version
from storage.rows import COLUMNS, NOT_SAVED, job_from_row, job_to_row
from storage.sessions import SessionQueries

__all__ = ["SqliteJobStore"]

log = logging.getLogger(__name__)

_POLLABLE = (JobState.RECEIVED.value, JobState.QUEUED.value, JobState.RUNNING.value)
# The partial index of due polls, named: with bound parameters (or beside the state index)
# the planner walks every unfinished job and sorts them on each claim; this seeks instead.
_DUE_POLL = (
    "INDEXED BY jobs_due_poll WHERE state IN ('received', 'queued', 'running')"  # = migration 1
)


class SqliteJobStore(SqliteConnection, SessionQueries, CommunityQueries, InboxQueries):
    """`JobStore` on one SQLite file. Use as an async context manager. Its connection and
    write transactions are connection.py's, its schema migrations.py's, its rows rows.py's.

    Several processes may share the file (`genrelay run` and any number of `generate`):
    a write waits `busy_timeout_ms` for another process's lock, then tries again with
    backoff for as long as it takes, so a busy file slows the service down, never stops it.

    Which jobs this process claims (to submit, poll or deliver), by `owner`:
    - `only_owner` set (a `generate` process): only its own console jobs;
    - else, with `owner_alive` (`run`): every job but the console jobs of a live process
      (a `generate` that is still waiting for them);
    - neither: every job."""

    def __init__(
        self,
        path: str | Path,
        *,
        default_chat_concurrency: int = 1_000_000,
        only_owner: str | None = None,
        owner_alive: Callable[[str], bool] | None = None,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    ) -> None:
        super().__init__(busy_timeout_ms=busy_timeout_ms)
        self.path = str(path)
        self.default_chat_concurrency = default_chat_concurrency
        self.only_owner = only_owner
        self.owner_alive = owner_alive

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

    # -- jobs -------------------------------------------------------------------------------

    def _insert_sql(self) -> str:
        return f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def _insert_params(self, job: Job) -> tuple[Any, ...]:
        row = job_to_row(job)
        return tuple(row[c] for c in COLUMNS)

    def _job(self, row: aiosqlite.Row) -> Job:
        return job_from_row(row)

    async def create(self, job: Job) -> None:
        """Insert `job`; DuplicateRequest when a job with its request key exists."""
        async with self.transaction() as db:
            await self._refuse_duplicate(db, job)
            await db.execute(self._insert_sql(), self._insert_params(job))

    async def _refuse_duplicate(self, db: aiosqlite.Connection, job: Job) -> None:
        """Inside a write transaction (so no other writer can slip in between)."""
        if job.request_key is None:
            return
        async with db.execute(
            "SELECT id FROM jobs WHERE request_key = ?", (job.request_key,)
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            raise DuplicateRequest(str(row[0]))

    async def find_request(self, request_key: str) -> Job | None:
        async with self.db.execute(
            "SELECT * FROM jobs WHERE request_key = ?", (request_key,)
        ) as cur:
            row = await cur.fetchone()
        return job_from_row(row) if row else None

    async def claim_status(self, job_id: str, now: float) -> bool:
        """Record that a status message for the job is about to be sent; False when it has
        one, or one was being sent already (maybe by a process that died meanwhile)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE jobs SET status_claimed_at = ? WHERE id = ?"
                " AND status_message_id IS NULL AND status_claimed_at IS NULL",
                (now, job_id),
            )
            return cur.rowcount == 1

    async def release_status(self, job_id: str) -> None:
        """The status message was surely not sent (the platform refused it): allow another."""
        async with self.transaction() as db:
            await db.execute(
                "UPDATE jobs SET status_claimed_at = NULL WHERE id = ?"
                " AND status_message_id IS NULL",
                (job_id,),
            )

    async def get(self, job_id: str) -> Job | None:
        async with self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return job_from_row(row) if row else None

    async def save(self, job: Job, *, expect: Sequence[JobState] | None = None) -> bool:
        row = job_to_row(job)
        cols = [c for c in COLUMNS if c not in NOT_SAVED]
        # A status message id, once stored, is kept: a copy of the job read before the
        # adapter attached it must not erase it.
        sets = [
            "status_message_id = COALESCE(status_message_id, ?)"
            if c == "status_message_id"
            else f"{c} = ?"
            for c in cols
        ]
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?"
        params: list[Any] = [row[c] for c in cols] + [job.id]
        if expect is not None:
            sql += f" AND state IN ({', '.join('?' * len(expect))})"
            params.extend(s.value for s in expect)
        async with self.transaction() as db:
            cur = await db.execute(sql, params)
            return cur.rowcount == 1

    async def set_status_message(self, job_id: str, message_id: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE jobs SET status_message_id = ? WHERE id = ?", (message_id, job_id)
            )

    def _reach(self) -> tuple[str, tuple[Any, ...]]:
        """The jobs this process may claim, as a WHERE condition (see the class doc)."""
        if self.only_owner is not None:
            return "(platform = 'console' AND owner = ?)", (self.only_owner,)
        if self.owner_alive is not None:
            return "(platform <> 'console' OR NOT owner_alive(owner))", ()
        return "1", ()

    async def claim_due_polls(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Running jobs due a poll, then waiting jobs whose turn has come (fair per chat)."""
        if limit <= 0:
            return []
        async with self.transaction() as db:
            reach, reach_params = self._reach()
            cur = await db.execute(
                "UPDATE jobs SET next_poll_at = ? WHERE id IN ("
                f" SELECT id FROM jobs {_DUE_POLL} AND state IN (?, ?) AND next_poll_at <= ?"
                f" AND {reach} ORDER BY next_poll_at LIMIT ?) RETURNING *",
                (
                    now + lease_s,
                    JobState.QUEUED.value,
                    JobState.RUNNING.value,
                    now,
                    *reach_params,
                    limit,
                ),
            )
            jobs = sorted(
                (job_from_row(r) for r in await cur.fetchall()), key=lambda j: j.created_at
            )
            if len(jobs) < limit:
                jobs += await self._claim_submittable(db, now, limit - len(jobs), lease_s)
        return jobs

    async def claim_due_deliveries(
        self, now: float, limit: int, lease_s: float, *, platforms: Collection[str]
    ) -> list[Job]:
        """Due deliveries for `platforms` only: a job whose platform has no sink here waits
        for a process that has one, and its lease is never taken or reset meanwhile."""
        names = sorted(platforms)
        if limit <= 0 or not names:
            return []
        async with self.transaction() as db:
            reach, reach_params = self._reach()
            cur = await db.execute(
                "UPDATE jobs SET next_delivery_at = ? WHERE id IN ("
                " SELECT id FROM jobs WHERE delivery = ? AND next_delivery_at <= ?"
                f" AND platform IN ({', '.join('?' * len(names))})"
                f" AND {reach} ORDER BY next_delivery_at LIMIT ?) RETURNING *",
                (now + lease_s, Delivery.PENDING.value, now, *names, *reach_params, limit),
            )
            rows = await cur.fetchall()
        return [job_from_row(r) for r in rows]

    async def recover(self, now: float, *, owner_alive: Callable[[str], bool]) -> list[Job]:
        """After a restart. A `submitting` job whose owner process is gone becomes
        `interrupted` (returned): its submit may or may not have reached the gateway, so it
        is never sent again. Every other unfinished job and pending delivery is due now."""
        async with self.db.execute(
            "SELECT id, owner FROM jobs WHERE state = ?", (JobState.SUBMITTING.value,)
        ) as cur:
            orphans = [r["id"] for r in await cur.fetchall() if not owner_alive(r["owner"] or "")]
        interrupted: list[Job] = []
        async with self.transaction() as db:
            for job_id in orphans:
                cur = await db.execute(
                    "UPDATE jobs SET state = ?, delivery = ?, next_delivery_at = ?, updated_at = ?,"
                    " finished_at = ?, next_poll_at = NULL, error_code = 'interrupted',"
                    " error_message = NULL WHERE id = ? AND state = ? RETURNING *",
                    (
                        JobState.INTERRUPTED.value,
                        Delivery.PENDING.value,
                        now,
                        now,
                        now,
                        job_id,
                        JobState.SUBMITTING.value,
                    ),
                )
                interrupted += [job_from_row(r) for r in await cur.fetchall()]
            await db.execute(
                "UPDATE jobs SET next_poll_at = ? WHERE state IN (?, ?, ?) AND next_poll_at > ?",
                (now, *_POLLABLE, now),
            )
            await db.execute(
                "UPDATE jobs SET next_delivery_at = ? WHERE delivery = ? AND next_delivery_at > ?",
                (now, Delivery.PENDING.value, now),
            )
        return interrupted

    async def next_due(self, after: float = float("-inf")) -> float | None:
        """The earliest next poll (or submit) time after `after` of a job the tracker
        follows. Deliveries are the notifier's, and a job due already is either claimed or
        waiting for a slot in its chat: neither says when the tracker must look next."""
        async with self.db.execute(
            f"SELECT MIN(next_poll_at) FROM jobs {_DUE_POLL} AND next_poll_at > ?", (after,)
        ) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def recent_durations(self, since: float, per_model: int) -> dict[str, list[float]]:
        """Seconds from submit to end of the latest `per_model` succeeded jobs of each model
        created since `since`, newest first. Walks the created_at index (`+state` keeps the
        planner off the state index, which would visit every success ever)."""
        async with self.db.execute(
            "SELECT model, d FROM ("
            " SELECT model, finished_at - submitted_at AS d, ROW_NUMBER() OVER"
            " (PARTITION BY model ORDER BY created_at DESC) AS n FROM jobs"
            " WHERE created_at >= ? AND +state = 'succeeded' AND submitted_at IS NOT NULL"
            " AND finished_at IS NOT NULL) WHERE n <= ? ORDER BY model, n",
            (since, per_model),
        ) as cur:
            rows = await cur.fetchall()
        out: dict[str, list[float]] = {}
        for model, duration in rows:
            out.setdefault(str(model), []).append(float(duration))
        return out

    async def recent(
        self,
        limit: int,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
    ) -> list[Job]:
        where, params = [], []
        for col, val in (("platform", platform), ("chat_id", chat_id), ("user_id", user_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        async with self.db.execute(sql, (*params, limit)) as cur:
            rows = await cur.fetchall()
        return [job_from_row(r) for r in rows]

    async def count_unfinished(self) -> int:
        terminal = [s.value for s in TERMINAL_STATES]
        async with self.db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE state NOT IN ({', '.join('?' * len(terminal))})",
            terminal,
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def count_by_model_state(self) -> list[tuple[str, str, int]]:
        """(model, state, jobs) for every pair that has jobs: the /metrics job counts."""
        async with self.db.execute(
            "SELECT model, state, COUNT(*) FROM jobs GROUP BY model, state"
        ) as cur:
            return [(str(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]

    # -- webhooks ---------------------------------------------------------------------------

    async def find_by_webhook_token(self, token: str) -> Job | None:
        async with self.db.execute("SELECT * FROM jobs WHERE webhook_token = ?", (token,)) as cur:
            row = await cur.fetchone()
        return job_from_row(row) if row else None

    async def poll_soon(self, job_id: str, at: float) -> bool:
        """Make a queued or running job due at `at`, unless it is due sooner already (a
        webhook's hint). True when it moved."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE jobs SET next_poll_at = ? WHERE id = ? AND state IN (?, ?)"
                " AND (next_poll_at IS NULL OR next_poll_at > ?)",
                (at, job_id, JobState.QUEUED.value, JobState.RUNNING.value, at),
            )
            return cur.rowcount == 1

    async def ping(self) -> bool:
        async with self.db.execute("SELECT 1") as cur:
            row = await cur.fetchone()
        return bool(row and row[0] == 1)
