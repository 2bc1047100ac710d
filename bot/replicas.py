"""This process as one replica among those sharing the store: its heartbeat row, written
every HEARTBEAT_S, and what it last read of the others' rows and of the leases (for
`Owners`, /readyz and /metrics)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from bot.constants import HEARTBEAT_S, REPLICA_FORGET_S
from bot.loops import StepFailures
from bot.models import Lease, Replica
from bot.owners import Owners
from bot.ports import Clock, LeaseStore

__all__ = ["Fleet", "Heartbeat"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fleet:
    """Who runs and who holds what, as read at `now`: this replica's name, every replica
    that still beats (role `run` or `generate`) and every lease."""

    me: str
    now: float
    replicas: list[Replica] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    alive: frozenset[str] = frozenset()

    def role(self, replica: Replica) -> str:
        try:
            return str(json.loads(replica.info).get("role", "run"))
        except (ValueError, AttributeError):
            return "run"

    def live(self, role: str = "run") -> list[Replica]:
        """The replicas of `role` that still run."""
        return [r for r in self.replicas if r.name in self.alive and self.role(r) == role]

    def held(self) -> list[Lease]:
        """The leases held now (not expired)."""
        return [lease for lease in self.leases if lease.expires_at >= self.now]

    def holder(self, name: str) -> str | None:
        return next((lease.holder for lease in self.held() if lease.name == name), None)


class Heartbeat:
    """Writes this process's replicas row (`start`, then `beat_once` every `interval_s`
    from `run`), reads everyone's into `owners`, and forgets rows gone for long.
    `stop` deletes its row and gives up every lease it holds."""

    def __init__(
        self,
        store: LeaseStore,
        owners: Owners,
        clock: Clock,
        *,
        role: str = "run",
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.store = store
        self.owners = owners
        self.clock = clock
        self.info = json.dumps({"role": role})
        self.interval_s = interval_s

    @property
    def name(self) -> str:
        return self.owners.name

    async def start(self) -> None:
        await self.store.restart_replica(self.name, self.clock.now(), self.info)
        await self.refresh()
        log.info("replica %s: started", self.name)

    async def beat_once(self) -> None:
        await self.store.heartbeat(self.name, self.clock.now(), self.info)
        await self.refresh()

    async def refresh(self) -> list[Replica]:
        """Read every replica row into `owners`; forget those silent for REPLICA_FORGET_S."""
        rows = await self.store.replicas()
        now = self.clock.now()
        for old in (r for r in rows if now - r.heartbeat_at > REPLICA_FORGET_S):
            await self.store.forget_replica(old.name)
        rows = [r for r in rows if now - r.heartbeat_at <= REPLICA_FORGET_S]
        self.owners.seen(rows)
        return rows

    async def fleet(self) -> Fleet:
        """Who runs and who holds what, read now."""
        rows = await self.refresh()
        leases = await self.store.leases()
        alive = frozenset(r.name for r in rows if self.owners.alive(r.name))
        return Fleet(self.name, self.clock.now(), rows, leases, alive)

    async def run(self) -> None:
        failures = StepFailures("heartbeat")
        while True:
            try:
                await self.beat_once()
            except Exception as exc:
                await failures.failed(exc)
                continue
            failures.ok()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """This process stops: its row goes, and every lease it still holds."""
        released = await self.store.release_leases(self.name)
        await self.store.forget_replica(self.name)
        log.info("replica %s: stopped (%d leases given up)", self.name, released)
