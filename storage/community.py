"""Queries for shared chats: atomic admission against limits, fair turns, chat settings,
usage. Mixed into both job stores (see dialect.py): on SQLite a write transaction is the only
writer; on PostgreSQL each one that reads before it writes first takes the lock (`_lock`) of
what it decides on, so processes sharing the database decide one at a time."""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from bot.community import Quota, Refusal, UsageRow
from bot.models import Delivery, Job
from bot.sessions import Session
from storage.dialect import Db, Dialect, Row

__all__ = ["CommunityQueries"]

_ACTIVE = ("submitting", "queued", "running")
# A job holds one of its chat's slots once sent, and from the moment it is claimed (a lease
# on a waiting job) until it is `submitting`. Written so the (platform, scope_id, state)
# index finds exactly those rows; `{j}` is the table's alias with its dot, or nothing.
_SLOT_STATES = (*_ACTIVE, "received")
_HOLDS_SLOT = (
    f"{{j}}state IN ({','.join('?' * len(_SLOT_STATES))})"
    " AND ({j}state != 'received' OR ({j}hold IS NULL AND {j}next_poll_at > ?))"
)
SCOPES_PER_QUERY = 400  # chats counted in one query (two parameters each)
_UNFINISHED = ("received", "submitting", "queued", "running")
# What a job costs so far: nothing when it was refused, failed or refunded; its price
# (reported, or the catalog's estimate while it runs) less refunds otherwise, never below 0.
_NET = "COALESCE(price_usd, 0) - COALESCE(refunded_usd, 0)"
_CHARGED = (
    f"CASE WHEN state IN ('rejected', 'failed', 'refunded') THEN 0 WHEN {_NET} > 0 THEN {_NET}"
    " ELSE 0 END"
)
# The lock of choosing which waiting jobs start (every chat's slots are counted at once).
_SUBMIT_TURNS = "submit-turns"


class CommunityQueries:
    if TYPE_CHECKING:

        @property
        def db(self) -> Db: ...

        def transaction(self) -> AbstractAsyncContextManager[Db]: ...

        default_chat_concurrency: int
        dialect: Dialect
        claimer: str | None

        async def _lock(self, db: Db, key: str) -> None: ...

        def _insert_sql(self) -> str: ...

        def _insert_params(self, job: Job) -> tuple[Any, ...]: ...

        def _job(self, row: Row) -> Job: ...

        async def _refuse_duplicate(self, db: Db, job: Job) -> None: ...

        async def _reach(self, db: Db) -> tuple[str, tuple[Any, ...]]: ...

        # storage/sessions.py: a job made where a session runs is one of its entries
        async def _session_rules(
            self, db: Db, job: Job
        ) -> tuple[Session | None, Refusal | None]: ...

        async def _add_entry(self, db: Db, job: Job, session: Session) -> None: ...

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, job: Job, quota: Quota) -> Refusal | None:
        """Insert `job` if it fits every limit, in one write transaction (two requests for
        the last slot cannot both get it). A refused job is not inserted. Made where a
        session runs, it must fit the session's rules too, and becomes its next entry.
        Locks, always in this order: the request key, the whole service's budget (when it
        has one), the chat, then the session (sessions.py)."""
        async with self.transaction() as db:
            await self._refuse_duplicate(db, job)
            if quota.global_budget_usd is not None:
                await self._lock(db, "budget")
            await self._lock(db, f"scope:{job.origin.platform}:{job.origin.scope_id}")
            session, refusal = await self._session_rules(db, job)
            refusal = refusal or await self._check(db, job, quota)
            if refusal is None:
                await db.execute(self._insert_sql(), self._insert_params(job))
                if session is not None:
                    await self._add_entry(db, job, session)
        return refusal

    async def over_limit(self, job: Job, quota: Quota) -> Refusal | None:
        """The limit `job` would go over if it were admitted now; inserts nothing."""
        async with self.transaction() as db:
            _, refusal = await self._session_rules(db, job)
            return refusal or await self._check(db, job, quota)

    async def _scalar(self, db: Db, sql: str, params: tuple[Any, ...]) -> float:
        async with db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return float(row[0] or 0) if row else 0.0

    async def _check(self, db: Db, job: Job, q: Quota) -> Refusal | None:
        o = job.origin
        scope = (o.platform, o.scope_id)
        if q.user_unfinished is not None:
            used = await self._scalar(
                db,
                "SELECT COUNT(*) FROM jobs WHERE platform = ? AND scope_id = ? AND user_id = ?"
                f" AND state IN ({','.join('?' * len(_UNFINISHED))})",
                (*scope, o.user_id, *_UNFINISHED),
            )
            if used >= q.user_unfinished:
                return Refusal("user_unfinished", used, q.user_unfinished)
        if q.user_daily is not None:
            used = await self._scalar(
                db,
                "SELECT COUNT(*) FROM jobs WHERE platform = ? AND scope_id = ? AND user_id = ?"
                " AND kind = ? AND created_at >= ? AND state != 'rejected'",
                (*scope, o.user_id, job.kind.value, q.since),
            )
            if used >= q.user_daily:
                return Refusal("user_daily", used, q.user_daily)
        price = job.price_usd or 0.0
        if q.chat_budget_usd is not None:
            spent = await self._scalar(
                db,
                f"SELECT SUM({_CHARGED}) FROM jobs WHERE platform = ? AND scope_id = ?"
                " AND created_at >= ?",
                (*scope, q.since),
            )
            if spent + price > q.chat_budget_usd + 1e-9:
                return Refusal("chat_budget", spent, q.chat_budget_usd)
        if q.global_budget_usd is not None:
            spent = await self._scalar(
                db, f"SELECT SUM({_CHARGED}) FROM jobs WHERE created_at >= ?", (q.since,)
            )
            if spent + price > q.global_budget_usd + 1e-9:
                return Refusal("global_budget", spent, q.global_budget_usd)
        return None

    # -- fair turns --------------------------------------------------------------------------

    async def _claim_submittable(self, db: Db, now: float, limit: int, lease_s: float) -> list[Job]:
        """Received jobs to send now: within each chat's concurrency, alternating between
        users (a user's n-th waiting job goes after everyone's (n-1)-th). One process
        chooses at a time (the slots it counts are the ones it fills)."""
        await self._lock(db, _SUBMIT_TURNS)
        waiting = await self._waiting(db, now=now)
        if not waiting:
            return []
        active, limits = await self._active_counts(db, {(p, s) for _, p, s, _ in waiting}, now)
        chosen: list[str] = []
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for job_id, platform, scope, _user in waiting:
            key = (platform, scope)
            cap = limits.get(key, self.default_chat_concurrency)
            if active.get(key, 0) + taken[key] >= cap:
                continue
            taken[key] += 1
            chosen.append(job_id)
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        marks = ",".join("?" * len(chosen))
        cur = await db.execute(
            f"UPDATE jobs SET next_poll_at = ?, claimed_by = ? WHERE id IN (SELECT id FROM jobs"
            f" WHERE id IN ({marks}) AND state = 'received' AND hold IS NULL AND next_poll_at <= ?"
            f"{self.dialect.skip_locked}) RETURNING *",
            (now + lease_s, self.claimer, *chosen, now),
        )
        rows = await cur.fetchall()
        order = {job_id: i for i, job_id in enumerate(chosen)}
        return sorted((self._job(r) for r in rows), key=lambda j: order[j.id])

    async def _waiting(
        self,
        db: Db,
        *,
        now: float | None = None,
        platform: str | None = None,
        scope: str | None = None,
    ) -> list[tuple[str, str, str, str]]:
        """Waiting jobs in turn order: (id, platform, scope_id, user_id). Round robin per
        chat: the user served longest ago (or never) goes first, one job per user a round."""
        where = "state = 'received' AND hold IS NULL"
        params: list[Any] = []
        if now is not None:  # choosing what to claim: only the jobs this process may take
            reach, reach_params = await self._reach(db)
            where += f" AND next_poll_at <= ? AND {reach}"
            params += [now, *reach_params]
        if platform is not None:
            where += " AND platform = ? AND scope_id = ?"
            params += [platform, scope]
        async with db.execute(
            f"SELECT id, platform, scope_id, user_id FROM jobs WHERE {where}"
            f" ORDER BY created_at, {self.dialect.seq}",
            params,
        ) as cur:
            rows = await cur.fetchall()
        if not rows:
            return []
        queues: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for r in rows:
            queues[(r[1], r[2], r[3])].append(r[0])
        served = await self._last_served(db, {(p, s) for p, s, _ in queues})
        users = sorted(queues, key=lambda u: served.get(u, float("-inf")))  # stable: oldest first
        ordered: list[tuple[str, str, str, str]] = []
        depth = max(len(q) for q in queues.values())
        for turn in range(depth):
            for user in users:
                if turn < len(queues[user]):
                    ordered.append((queues[user][turn], *user))
        return ordered

    async def _last_served(
        self, db: Db, scopes: set[tuple[str, str]]
    ) -> dict[tuple[str, str, str], float]:
        """When each user of these chats last had a job sent to the gateway."""
        out: dict[tuple[str, str, str], float] = {}
        for platform, scope in scopes:
            async with db.execute(
                "SELECT user_id, MAX(submitted_at) FROM jobs WHERE platform = ? AND scope_id = ?"
                " AND submitted_at IS NOT NULL GROUP BY user_id",
                (platform, scope),
            ) as cur:
                for user, at in await cur.fetchall():
                    out[(platform, scope, user)] = float(at)
        return out

    async def _active_counts(
        self, db: Db, scopes: set[tuple[str, str]], now: float
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """For these chats only: how many jobs hold a slot (sent, or claimed a moment ago
        and not yet `submitting`), and the chats' own concurrency limits."""
        active: dict[tuple[str, str], int] = defaultdict(int)
        limits: dict[tuple[str, str], int] = {}
        pending = sorted(scopes)
        while pending:
            batch, pending = pending[:SCOPES_PER_QUERY], pending[SCOPES_PER_QUERY:]
            rows = ",".join("(?, ?)" for _ in batch)
            flat = [v for scope in batch for v in scope]
            async with db.execute(
                f"SELECT j.platform, j.scope_id, COUNT(*) FROM (VALUES {rows}) AS s"
                f" {self.dialect.cross_join} jobs AS j"
                " ON j.platform = s.column1 AND j.scope_id = s.column2"
                f" WHERE {_HOLDS_SLOT.format(j='j.')} GROUP BY 1, 2",
                (*flat, *_SLOT_STATES, now),
            ) as cur:
                for platform, scope, n in await cur.fetchall():
                    active[(platform, scope)] = n
            async with db.execute(
                "SELECT platform, scope_id, concurrency FROM chat_settings"
                f" WHERE (platform, scope_id) IN (VALUES {rows}) AND concurrency IS NOT NULL",
                flat,
            ) as cur:
                limits.update({(p, s): int(c) for p, s, c in await cur.fetchall()})
        return active, limits

    async def scope_load(self, platform: str, scope_id: str, now: float) -> tuple[int, int]:
        """(jobs holding a slot now, the chat's limit) for one chat: counted for that chat
        alone, since this runs on every submit."""
        async with self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE platform = ? AND scope_id = ? AND "
            + _HOLDS_SLOT.format(j=""),
            (platform, scope_id, *_SLOT_STATES, now),
        ) as cur:
            row = await cur.fetchone()
        async with self.db.execute(
            "SELECT concurrency FROM chat_settings WHERE platform = ? AND scope_id = ?",
            (platform, scope_id),
        ) as cur:
            limit_row = await cur.fetchone()
        active = int(row[0]) if row else 0
        if limit_row is None or limit_row[0] is None:
            return active, self.default_chat_concurrency
        return active, int(limit_row[0])

    async def queue_positions(self, platform: str, scope_id: str) -> dict[str, int]:
        """1-based places in line of the chat's waiting jobs."""
        waiting = await self._waiting(self.db, platform=platform, scope=scope_id)
        return {job_id: i for i, (job_id, *_rest) in enumerate(waiting, start=1)}

    # -- holds and cancels -------------------------------------------------------------------

    async def release_hold(self, job_id: str, now: float) -> bool:
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE jobs SET hold = NULL, hold_expires_at = NULL, next_poll_at = ?,"
                " updated_at = ? WHERE id = ? AND state = 'received' AND hold IS NOT NULL",
                (now, now, job_id),
            )
            return cur.rowcount == 1

    async def stop_waiting(self, job_id: str, now: float, *, code: str, message: str) -> bool:
        """End a job that was never sent (cancelled, confirmation expired): `rejected`."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE jobs SET state = 'rejected', error_code = ?, error_message = ?,"
                " hold = NULL, hold_expires_at = NULL, next_poll_at = NULL, finished_at = ?,"
                " updated_at = ?, delivery = ?, next_delivery_at = ?"
                " WHERE id = ? AND state = 'received'",
                (code, message, now, now, Delivery.PENDING.value, now, job_id),
            )
            return cur.rowcount == 1

    async def expired_holds(self, now: float) -> list[str]:
        async with self.db.execute(
            "SELECT id FROM jobs WHERE state = 'received' AND hold IS NOT NULL"
            " AND hold_expires_at <= ?",
            (now,),
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    # -- chat settings -----------------------------------------------------------------------

    async def chat_settings(self, platform: str, scope_id: str) -> dict[str, Any]:
        async with self.db.execute(
            "SELECT settings FROM chat_settings WHERE platform = ? AND scope_id = ?",
            (platform, scope_id),
        ) as cur:
            row = await cur.fetchone()
        return dict(json.loads(row[0])) if row else {}

    async def save_chat_settings(
        self, platform: str, scope_id: str, values: dict[str, Any], *, by: str, now: float
    ) -> None:
        concurrency = values.get("chat_jobs_at_once")
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO chat_settings (platform, scope_id, settings, concurrency,"
                " updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, scope_id) DO UPDATE SET settings = excluded.settings,"
                " concurrency = excluded.concurrency, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                (platform, scope_id, json.dumps(values), concurrency, now, by),
            )

    # -- usage -------------------------------------------------------------------------------

    async def usage_by_user(self, platform: str, scope_id: str, since: float) -> list[UsageRow]:
        async with self.db.execute(
            f"SELECT user_id, MAX({self.dialect.user_name}), COUNT(*),"
            f" SUM({_CHARGED}) FROM jobs WHERE platform = ? AND scope_id = ?"
            " AND created_at >= ? AND state != 'rejected' GROUP BY user_id"
            " ORDER BY 4 DESC, 3 DESC",
            (platform, scope_id, since),
        ) as cur:
            return [UsageRow(r[0], r[1], int(r[2]), float(r[3] or 0)) for r in await cur.fetchall()]

    async def spend(
        self, since: float, *, platform: str | None = None, scope_id: str | None = None
    ) -> float:
        sql = f"SELECT SUM({_CHARGED}) FROM jobs WHERE created_at >= ?"
        params: list[Any] = [since]
        if platform is not None:
            sql += " AND platform = ? AND scope_id = ?"
            params += [platform, scope_id]
        return await self._scalar(self.db, sql, tuple(params))

    async def user_history(
        self, platform: str, scope_id: str, user_id: str, limit: int
    ) -> list[Job]:
        async with self.db.execute(
            "SELECT * FROM jobs WHERE platform = ? AND scope_id = ? AND user_id = ?"
            f" AND state != 'rejected' ORDER BY created_at DESC, {self.dialect.seq} DESC LIMIT ?",
            (platform, scope_id, user_id, limit),
        ) as cur:
            return [self._job(r) for r in await cur.fetchall()]

    async def cancellable(self, platform: str, scope_id: str, user_id: str) -> list[Job]:
        """The user's unfinished jobs in this chat, newest first."""
        async with self.db.execute(
            "SELECT * FROM jobs WHERE platform = ? AND scope_id = ? AND user_id = ?"
            f" AND state IN ({','.join('?' * len(_UNFINISHED))})"
            f" ORDER BY created_at DESC, {self.dialect.seq} DESC",
            (platform, scope_id, user_id, *_UNFINISHED),
        ) as cur:
            return [self._job(r) for r in await cur.fetchall()]
