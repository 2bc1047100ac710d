"""The job store on PostgreSQL, for several processes or replicas on one database: a pool of
connections (pg_connection.py), migrations of its own (pg_migrations.py), and the very
queries of the SQLite store (jobs.py, community.py, sessions.py, inbox.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from bot.constants import PG_CONNECT_TIMEOUT_S, PG_POOL_MAX, PG_POOL_MIN
from bot.errors import ConfigError
from bot.logs import redact_url
from storage.community import CommunityQueries
from storage.dialect import POSTGRES, Db
from storage.inbox import InboxQueries
from storage.jobs import JobQueries
from storage.leases import LeaseQueries
from storage.pg_connection import PgConnection
from storage.pg_migrations import migrate, schema_version
from storage.sessions import SessionQueries

__all__ = ["PostgresJobStore"]

log = logging.getLogger(__name__)

_LIVE_STATES = "('received', 'submitting', 'queued', 'running')"


class PostgresJobStore(
    PgConnection, JobQueries, SessionQueries, CommunityQueries, InboxQueries, LeaseQueries
):
    """`JobStore` on a PostgreSQL database (`postgresql://user@host:port/db`). Use as an
    async context manager: entering opens the pool and migrates the schema.

    Any number of processes may share the database. SQLite's one writer at a time made each
    transaction that reads and then writes safe; here transactions run side by side (READ
    COMMITTED), so each such write first takes a transaction-scoped advisory lock on what it
    decides on (`_lock`): the request key, the chat (admission against its limits), the
    service's budget, a session (its entries, budget and numbers), an entry (votes), a place
    (one open session), the choice of which waiting jobs start. The claims of the tracker
    and the notifier lock their rows with FOR UPDATE SKIP LOCKED, so no job is claimed by
    two processes; a claim of one known row (a status message, a session's card or recap)
    is a conditional UPDATE, which waits for the row and then sees the other's claim.

    Which jobs this process claims, by `owner`, as SqliteJobStore's class doc says:
    `only_owner` (a `generate`): its own console jobs; else with `owner_alive` (`run`): every
    job but the console jobs of a live process, asked of `owner_alive` in Python for the
    owners of unfinished console jobs before each claim (no function runs in the server);
    neither: every job. A console job whose owner is empty counts as a dead process's."""

    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        default_chat_concurrency: int = 1_000_000,
        only_owner: str | None = None,
        owner_alive: Callable[[str], bool] | None = None,
        claimer: str | None = None,
        min_size: int = PG_POOL_MIN,
        max_size: int = PG_POOL_MAX,
        connect_timeout_s: float = PG_CONNECT_TIMEOUT_S,
    ) -> None:
        super().__init__(url, min_size=min_size, max_size=max_size)
        self.default_chat_concurrency = default_chat_concurrency
        self.only_owner = only_owner
        self.owner_alive = owner_alive
        self.claimer = claimer  # written on the jobs this process claims (claimed_by)
        self.connect_timeout_s = connect_timeout_s

    async def __aenter__(self) -> PostgresJobStore:
        where = redact_url(self.url)
        try:
            await self._open_pool(self.connect_timeout_s)
        except (psycopg.Error, PoolTimeout) as exc:
            reason = redact_url(str(exc).strip())
            raise ConfigError(f"the job store at {where} cannot be reached: {reason}") from None
        try:
            await migrate(self)
        except BaseException:
            await self._close_pool()
            raise
        log.info("job store: PostgreSQL at %s", where)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_pool()

    async def schema_version(self) -> int:
        return await schema_version(self.db)

    async def _lock(self, db: Db, key: str) -> None:
        """Hold `key`'s lock until the transaction ends (waiting for another's)."""
        await db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"genrelay:{key}",))

    async def _reach(self, db: Db) -> tuple[str, tuple[Any, ...]]:
        """The jobs this process may claim, as a WHERE condition (see the class doc)."""
        if self.only_owner is not None:
            return "(platform = 'console' AND owner = ?)", (self.only_owner,)
        if self.owner_alive is None:
            return "TRUE", ()
        async with db.execute(
            "SELECT DISTINCT owner FROM jobs WHERE platform = 'console' AND owner <> ''"
            f" AND (state IN {_LIVE_STATES} OR delivery = 'pending')"
        ) as cur:
            owners = [str(r[0]) for r in await cur.fetchall()]
        alive = self.owner_alive
        live = [owner for owner in owners if alive(owner)]
        return "(platform <> 'console' OR COALESCE(owner, '') <> ALL(?))", (live,)
