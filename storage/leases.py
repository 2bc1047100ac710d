"""Leases and replicas: which process holds each platform connection, and each process's
heartbeat. Mixed into a job store, so it shares its connection and write lock. Portable SQL
(`?` placeholders, `ON CONFLICT ... DO UPDATE`, `RETURNING`, plain types), so the PostgreSQL
store can mix it in too; each claim is one statement, atomic on either engine."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from bot.models import Lease, Replica

__all__ = ["LeaseQueries"]


def _lease(row: Any) -> Lease:
    return Lease(
        name=str(row[0]),
        holder=str(row[1]),
        acquired_at=float(row[2] or 0.0),
        expires_at=float(row[3] or 0.0),
    )


class LeaseQueries:
    """`LeaseStore` (bot/ports.py). A lease is taken when it is free, expired or already
    the caller's; renewed only by its holder while it is still the holder's."""

    if TYPE_CHECKING:

        @property
        def db(self) -> Any: ...

        def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take lease `name` for `holder` until `now + ttl` when nobody holds it, its holder
        let it expire, or `holder` holds it already (its start is kept then). One statement."""
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET"
                " acquired_at = CASE WHEN leases.holder = excluded.holder"
                " THEN leases.acquired_at ELSE excluded.acquired_at END,"
                " holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE leases.expires_at < excluded.acquired_at OR leases.holder = excluded.holder"
                " RETURNING holder",
                (name, holder, now, now + ttl),
            )
            rows = await cur.fetchall()
        return bool(rows) and str(rows[0][0]) == holder

    async def take_lease(
        self, name: str, dead_holder: str, holder: str, now: float, ttl: float
    ) -> bool:
        """Take lease `name` from `dead_holder` (a process known to be gone) before it
        expires; False when someone else holds it by now."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE leases SET holder = ?, acquired_at = ?, expires_at = ?"
                " WHERE name = ? AND holder = ?",
                (holder, now, now + ttl, name, dead_holder),
            )
            return int(cur.rowcount) == 1

    async def renew_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Push the lease's end to `now + ttl`, only while `holder` holds it and it has not
        expired (an expired lease may be another's already: take it again instead)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE leases SET expires_at = ?"
                " WHERE name = ? AND holder = ? AND expires_at >= ?",
                (now + ttl, name, holder, now),
            )
            return int(cur.rowcount) == 1

    async def release_lease(self, name: str, holder: str) -> bool:
        """Give it up at once (only the holder can); True when it was held."""
        async with self.transaction() as db:
            cur = await db.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)
            )
            return int(cur.rowcount) == 1

    async def release_leases(self, holder: str) -> int:
        """Every lease `holder` holds, given up at once; how many."""
        async with self.transaction() as db:
            cur = await db.execute("DELETE FROM leases WHERE holder = ?", (holder,))
            return int(cur.rowcount)

    async def leases(self) -> list[Lease]:
        """Every lease, by name (expired ones too: their holder stopped renewing)."""
        async with self.db.execute(
            "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name"
        ) as cur:
            return [_lease(r) for r in await cur.fetchall()]

    async def heartbeat(self, replica: str, now: float, info: str) -> None:
        """`replica` runs at `now`: its row is written (made at its first beat)."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO replicas (name, started_at, heartbeat_at, info) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,"
                " info = excluded.info",
                (replica, now, now, info),
            )

    async def restart_replica(self, replica: str, now: float, info: str) -> None:
        """A process starts under `replica`'s name (a container's pid 1 again, say): its
        row begins anew."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO replicas (name, started_at, heartbeat_at, info) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,"
                " heartbeat_at = excluded.heartbeat_at, info = excluded.info",
                (replica, now, now, info),
            )

    async def replicas(self, since: float = 0.0) -> list[Replica]:
        """Every replica whose latest heartbeat is at or after `since`, newest first."""
        async with self.db.execute(
            "SELECT name, started_at, heartbeat_at, info FROM replicas WHERE heartbeat_at >= ?"
            " ORDER BY heartbeat_at DESC, name",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        return [
            Replica(
                name=str(r[0]),
                started_at=float(r[1] or 0.0),
                heartbeat_at=float(r[2] or 0.0),
                info=str(r[3] or "{}"),
            )
            for r in rows
        ]

    async def forget_replica(self, replica: str) -> None:
        """It stopped (or has been gone for long): its row goes."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM replicas WHERE name = ?", (replica,))
