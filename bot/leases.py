"""Platform connections held by one replica at a time. Each connection (`telegram`,
`discord:shard:<i>`: the names are free-form) has a lease in the store; `LeaseKeeper` takes
it, renews it and gives it up, and `LeasedAdapter` runs a chat adapter only while its lease
is held here.

Timing (bot/constants.py): a replica without the lease tries to take it every
LEASE_RETRY_S; the holder renews it every LEASE_RENEW_S for LEASE_TTL_S. A holder killed
outright stops renewing: its lease expires within LEASE_TTL_S and another takes it at its
next try (at once when the holder is on the same host: its pid is gone). A holder that
cannot renew for LEASE_TTL_S / 2 (the store does not answer) leaves its connection, well
before the lease could expire and another could connect (two Telegram long polls answer
409 Conflict). A replica being stopped gives its leases up at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from bot.constants import LEASE_RENEW_S, LEASE_RETRY_S, LEASE_TTL_S
from bot.owners import Owners
from bot.ports import Clock, LeaseStore
from bot.supervisor import AdapterSupervisor

__all__ = ["LeaseKeeper", "LeasedAdapter"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class LeaseKeeper:
    """One named lease for this replica (`owners.name`). `acquire_once` tries to take it,
    `renew_once` keeps it (False once lost or dropped), `release` gives it up. `held`,
    `since` and `holder` (who holds it when not this replica, as last seen) say how it
    stands."""

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        owners: Owners,
        clock: Clock,
        *,
        ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self.store = store
        self.name = name
        self.owners = owners
        self.clock = clock
        self.ttl_s = ttl_s
        self.held = False
        self.since: float | None = None
        self.renewed_at = 0.0
        self.holder: str | None = None

    @property
    def me(self) -> str:
        return self.owners.name

    def _took(self, now: float) -> bool:
        self.held, self.since, self.renewed_at, self.holder = True, now, now, self.me
        log.info("lease %s: held by this replica (%s)", self.name, self.me)
        return True

    async def acquire_once(self) -> bool:
        """Take the lease when it is free, expired, already ours, or its holder is known to
        be gone (a process on this host whose pid is; one elsewhere that stopped beating)."""
        now = self.clock.now()
        if await self.store.acquire_lease(self.name, self.me, now, self.ttl_s):
            return self._took(now)
        lease = next((x for x in await self.store.leases() if x.name == self.name), None)
        holder = lease.holder if lease is not None else None
        if holder != self.holder:
            log.info("lease %s: held by %s", self.name, holder or "nobody")
        self.holder = holder
        if holder is None or self.owners.alive(holder):
            return False
        if await self.store.take_lease(self.name, holder, self.me, now, self.ttl_s):
            log.warning("lease %s: taken over from %s, which is gone", self.name, holder)
            return self._took(now)
        return False

    async def renew_once(self) -> bool:
        """Renew it; False when it is lost (another holds it, or it expired meanwhile) or
        dropped (not renewed for ttl / 2: the store did not answer). Leave the connection
        at once then."""
        left = self.renewed_at + self.ttl_s / 2 - self.clock.now()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                ok = await self.store.renew_lease(self.name, self.me, self.clock.now(), self.ttl_s)
        except Exception as exc:  # TimeoutError too: the store is slow or away
            if self.clock.now() - self.renewed_at < self.ttl_s / 2:
                log.warning("lease %s: not renewed (%s); trying again", self.name, exc)
                return True
            log.error("lease %s: not renewed for %g s: leaving it", self.name, self.ttl_s / 2)
            self.held = False
            return False
        if not ok:
            log.error("lease %s: lost (it expired or another replica holds it)", self.name)
            self.held, self.holder = False, None
            return False
        self.renewed_at = self.clock.now()
        return True

    async def release(self) -> None:
        """Give it up at once (best effort: unrenewed, it expires anyway)."""
        if not self.held:
            return
        self.held, self.holder = False, None
        try:
            await self.store.release_lease(self.name, self.me)
        except Exception:
            log.exception("lease %s: not released; it expires within %g s", self.name, self.ttl_s)
            return
        log.info("lease %s: released", self.name)


class LeasedAdapter:
    """A chat adapter run only while this replica holds its lease: `run` waits for the
    lease, runs an `AdapterSupervisor` (a fresh one per term, from `make`) while renewing it,
    and leaves the adapter at once when the lease is lost. `stop_intake` (the service is
    stopping) stops the adapter's intake and hands the lease over at once; the adapter
    stays until the end for the deliveries in flight. /readyz reads `connected`, `problem`
    and `elsewhere` (the replica holding it when not this one)."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        make: Callable[[], AdapterSupervisor],
        *,
        first: AdapterSupervisor | None = None,
        retry_s: float = LEASE_RETRY_S,
        renew_s: float = LEASE_RENEW_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.keeper = keeper
        self._make = make
        # Built now (it builds its adapter): a setting it cannot take raises ConfigError now.
        self._next: AdapterSupervisor | None = first or make()
        # What /readyz calls it: the lease's name (`telegram`, `discord:shard:1`).
        self.platform = keeper.name
        self.retry_s = retry_s
        self.renew_s = renew_s
        self._sleep = sleep
        self.supervisor: AdapterSupervisor | None = None  # while the lease is held
        self._stopping = False
        self.terms = 0  # how many times the lease was taken

    @property
    def connected(self) -> bool:
        return self.supervisor is not None and self.supervisor.connected

    @property
    def problem(self) -> str | None:
        if self.supervisor is not None:
            return self.supervisor.problem
        return "waiting for its lease"

    @property
    def shards(self) -> Mapping[int, str]:
        """The Discord shards its adapter runs, and their states ({} when none)."""
        return self.supervisor.shards if self.supervisor is not None else {}

    @property
    def elsewhere(self) -> str | None:
        """The replica holding this connection, when another one does."""
        holder = self.keeper.holder
        return holder if not self.keeper.held and holder and holder != self.keeper.me else None

    async def stop_intake(self) -> None:
        self._stopping = True
        if self.supervisor is not None:
            await self.supervisor.stop_intake()
            await self.keeper.release()  # another replica may connect now

    async def run(self) -> None:
        """Until cancelled: take the lease, hold the adapter while it is held, again."""
        try:
            while not self._stopping:
                if await self._acquire():
                    await self._hold()
                else:
                    await self._sleep(self.retry_s)
            await asyncio.Event().wait()  # stopping: no new term
        finally:
            await self.keeper.release()

    async def _acquire(self) -> bool:
        try:
            return await self.keeper.acquire_once()
        except Exception:  # the store did not answer: the next try
            log.warning("lease %s: could not be asked for", self.keeper.name, exc_info=True)
            return False

    async def _hold(self) -> None:
        """One term: the adapter runs (kept trying by its supervisor) while renewals work."""
        supervisor, self._next = self._next or self._make(), None
        self.supervisor = supervisor
        self.terms += 1
        task = asyncio.create_task(supervisor.run(), name=f"adapter-{self.platform}-connection")
        try:
            while True:
                await asyncio.wait({task}, timeout=self.renew_s)
                if task.done():
                    task.result()  # ConfigError: ends the service
                    raise RuntimeError(f"{self.platform}: the adapter stopped")
                if not self._stopping and not await self.keeper.renew_once():
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.supervisor = None
        log.warning("%s: left (its lease %s is no longer ours)", self.platform, self.keeper.name)
