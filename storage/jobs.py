"""Queries on jobs: create, read, save (compare-and-set on the state), the leased claims of
the tracker and the notifier, recovery after a restart, and the listings. Written once for
both engines (see dialect.py); mixed into SqliteJobStore and PostgresJobStore."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from bot.errors import DuplicateRequest
from bot.models import TERMINAL_STATES, Delivery, Job, JobState
from storage.dialect import Db, Dialect, Row
from storage.rows import COLUMNS, NOT_SAVED, job_from_row, job_to_row

__all__ = ["JobQueries"]

_POLLABLE = (JobState.RECEIVED.value, JobState.QUEUED.value, JobState.RUNNING.value)
# The jobs whose claims matter: the predicate of migration 9's partial index, word for word.
_CLAIMED = "(state IN ('received', 'queued', 'running') OR delivery = 'pending')"


class JobQueries:
    if TYPE_CHECKING:

        @property
        def db(self) -> Db: ...

        def transaction(self) -> AbstractAsyncContextManager[Db]: ...

        dialect: Dialect
        claimer: str | None

        async def _lock(self, db: Db, key: str) -> None: ...

        async def _reach(self, db: Db) -> tuple[str, tuple[Any, ...]]: ...

        async def _claim_submittable(
            self, db: Db, now: float, limit: int, lease_s: float
        ) -> list[Job]: ...

    # -- jobs -------------------------------------------------------------------------------

    def _insert_sql(self) -> str:
        return f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def _insert_params(self, job: Job) -> tuple[Any, ...]:
        row = job_to_row(job)
        return tuple(row[c] for c in COLUMNS)

    def _job(self, row: Row) -> Job:
        return job_from_row(row)

    async def create(self, job: Job) -> None:
        """Insert `job`; DuplicateRequest when a job with its request key exists."""
        async with self.transaction() as db:
            await self._refuse_duplicate(db, job)
            await db.execute(self._insert_sql(), self._insert_params(job))

    async def _refuse_duplicate(self, db: Db, job: Job) -> None:
        """Inside a write transaction, holding the request key's lock (so no other writer
        can slip in between)."""
        if job.request_key is None:
            return
        await self._lock(db, f"request:{job.request_key}")
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

    async def owe_status_drop(self, job_id: str, now: float) -> None:
        """The job's status message is to be deleted (after its result went out)."""
        async with self.transaction() as db:
            await db.execute("UPDATE jobs SET status_drop_owed = ? WHERE id = ?", (now, job_id))

    async def status_dropped(self, job_id: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE jobs SET status_drop_owed = NULL WHERE id = ?"
                " AND status_drop_owed IS NOT NULL",
                (job_id,),
            )

    async def owed_status_drops(self, platform: str, limit: int = 500) -> list[Job]:
        """Jobs of `platform` whose status message is still to be deleted, oldest first."""
        async with self.db.execute(
            "SELECT * FROM jobs WHERE platform = ? AND status_drop_owed IS NOT NULL"
            " ORDER BY status_drop_owed LIMIT ?",
            (platform, limit),
        ) as cur:
            return [job_from_row(r) for r in await cur.fetchall()]

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

    async def claim_due_polls(self, now: float, limit: int, lease_s: float) -> list[Job]:
        """Running jobs due a poll, then waiting jobs whose turn has come (fair per chat)."""
        if limit <= 0:
            return []
        async with self.transaction() as db:
            reach, reach_params = await self._reach(db)
            cur = await db.execute(
                "UPDATE jobs SET next_poll_at = ?, claimed_by = ? WHERE id IN ("
                f" SELECT id FROM jobs {self.dialect.due_poll} AND state IN (?, ?)"
                f" AND next_poll_at <= ? AND {reach} ORDER BY next_poll_at LIMIT ?"
                f"{self.dialect.skip_locked}) RETURNING *",
                (
                    now + lease_s,
                    self.claimer,
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
            reach, reach_params = await self._reach(db)
            cur = await db.execute(
                "UPDATE jobs SET next_delivery_at = ?, claimed_by = ? WHERE id IN ("
                " SELECT id FROM jobs WHERE delivery = ? AND next_delivery_at <= ?"
                f" AND platform IN ({', '.join('?' * len(names))})"
                f" AND {reach} ORDER BY next_delivery_at LIMIT ?{self.dialect.skip_locked})"
                " RETURNING *",
                (
                    now + lease_s,
                    self.claimer,
                    Delivery.PENDING.value,
                    now,
                    *names,
                    *reach_params,
                    limit,
                ),
            )
            rows = await cur.fetchall()
        return [job_from_row(r) for r in rows]

    async def recover(
        self, now: float, *, owner_alive: Callable[[str], bool], reschedule: bool = True
    ) -> list[Job]:
        """At start, and every few seconds. A `submitting` job whose owner process is gone
        becomes `interrupted` (returned): its submit may or may not have reached the
        gateway, so it is never sent again. The polls and deliveries a gone process had
        claimed are due now, not when their leases end. With `reschedule` (a restart, no
        other replica running), every other unfinished job and pending delivery is due now."""
        async with self.db.execute(
            "SELECT id, owner FROM jobs WHERE state = ?", (JobState.SUBMITTING.value,)
        ) as cur:
            orphans = [r["id"] for r in await cur.fetchall() if not owner_alive(r["owner"] or "")]
        gone = [c for c in await self._claimers() if not owner_alive(c)]
        interrupted: list[Job] = []
        if not orphans and not gone and not reschedule:
            return interrupted  # the periodic look: no write when nothing is to be done
        async with self.transaction() as db:
            await self._lock(db, "recover")  # two processes at once: one at a time
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
            for claimer in gone:
                await self._release_claims(db, claimer, now)
            if reschedule:
                await self._all_due(db, now)
        return interrupted

    async def _claimers(self) -> list[str]:
        """The processes that claimed an unfinished poll or a pending delivery."""
        async with self.db.execute(
            f"SELECT DISTINCT claimed_by FROM jobs WHERE {_CLAIMED} AND claimed_by IS NOT NULL"
        ) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def _release_claims(self, db: Db, claimer: str, now: float) -> None:
        """What `claimer` (gone) had claimed is due now, and claimed by nobody."""
        await db.execute(
            "UPDATE jobs SET next_poll_at = ? WHERE claimed_by = ? AND state IN (?, ?, ?)"
            " AND next_poll_at > ?",
            (now, claimer, *_POLLABLE, now),
        )
        await db.execute(
            "UPDATE jobs SET next_delivery_at = ? WHERE claimed_by = ? AND delivery = ?"
            " AND next_delivery_at > ?",
            (now, claimer, Delivery.PENDING.value, now),
        )
        await db.execute(
            f"UPDATE jobs SET claimed_by = NULL WHERE {_CLAIMED} AND claimed_by = ?", (claimer,)
        )

    async def _all_due(self, db: Db, now: float) -> None:
        await db.execute(
            "UPDATE jobs SET next_poll_at = ? WHERE state IN (?, ?, ?) AND next_poll_at > ?",
            (now, *_POLLABLE, now),
        )
        await db.execute(
            "UPDATE jobs SET next_delivery_at = ? WHERE delivery = ? AND next_delivery_at > ?",
            (now, Delivery.PENDING.value, now),
        )

    async def next_due(self, after: float = float("-inf")) -> float | None:
        """The earliest next poll (or submit) time after `after` of a job the tracker
        follows. Deliveries are the notifier's, and a job due already is either claimed or
        waiting for a slot in its chat: neither says when the tracker must look next."""
        async with self.db.execute(
            f"SELECT MIN(next_poll_at) FROM jobs {self.dialect.due_poll} AND next_poll_at > ?",
            (after,),
        ) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def recent_durations(self, since: float, per_model: int) -> dict[str, list[float]]:
        """Seconds from submit to end of the latest `per_model` succeeded jobs of each model
        created since `since`, newest first. Walks the created_at index (SQLite's `+state`
        keeps the planner off the state index, which would visit every success ever)."""
        async with self.db.execute(
            "SELECT model, d FROM ("
            " SELECT model, finished_at - submitted_at AS d, ROW_NUMBER() OVER"
            " (PARTITION BY model ORDER BY created_at DESC) AS n FROM jobs"
            f" WHERE created_at >= ? AND {self.dialect.state_unindexed} = 'succeeded'"
            " AND submitted_at IS NOT NULL AND finished_at IS NOT NULL) AS recent"
            " WHERE n <= ? ORDER BY model, n",
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
        sql += f" ORDER BY created_at DESC, {self.dialect.seq} DESC LIMIT ?"
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
