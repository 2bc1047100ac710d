"""Leases and replicas: the store's LeaseQueries contract (through the `store` fixture, so
another engine can be added to its parameters), which processes count as alive, the
periodic recovery of a gone replica's submits, and LeaseKeeper / LeasedAdapter driven
with a fake clock and short intervals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.leases import LeasedAdapter, LeaseKeeper
from bot.main.wiring import open_core
from bot.models import Delivery, JobState, Replica
from bot.owners import Owners
from bot.supervisor import AdapterSupervisor
from storage.postgres import PostgresJobStore
from storage.sqlite import SqliteJobStore
from tests.conftest import FakeClock
from tests.test_store import make_job

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A LeaseStore on a real database: one per engine in `params`."""
    if request.param == "sqlite":
        async with SqliteJobStore(tmp_path / "leases.db") as opened:
            yield opened
        return
    async with PostgresJobStore(str(request.getfixturevalue("pg_url"))) as opened:
        yield opened


# -- the store's contract ---------------------------------------------------------------------


async def test_a_free_lease_is_taken_and_a_held_one_refused(store: Any) -> None:
    assert await store.acquire_lease("telegram", "a:1", T0, 10.0)
    assert not await store.acquire_lease("telegram", "b:2", T0 + 5, 10.0)
    assert await store.acquire_lease("discord:shard:0", "b:2", T0 + 5, 10.0)  # another name
    [discord, telegram] = await store.leases()
    assert (telegram.holder, telegram.acquired_at, telegram.expires_at) == ("a:1", T0, T0 + 10)
    assert (discord.name, discord.holder) == ("discord:shard:0", "b:2")


async def test_the_holder_takes_it_again_and_keeps_its_start(store: Any) -> None:
    assert await store.acquire_lease("telegram", "a:1", T0, 10.0)
    assert await store.acquire_lease("telegram", "a:1", T0 + 3, 10.0)
    [lease] = await store.leases()
    assert (lease.acquired_at, lease.expires_at) == (T0, T0 + 13)


async def test_an_expired_lease_goes_to_whoever_asks(store: Any) -> None:
    assert await store.acquire_lease("telegram", "a:1", T0, 10.0)
    assert not await store.acquire_lease("telegram", "b:2", T0 + 10, 10.0)  # at its end: not yet
    assert await store.acquire_lease("telegram", "b:2", T0 + 10.5, 10.0)
    [lease] = await store.leases()
    assert (lease.holder, lease.acquired_at) == ("b:2", T0 + 10.5)
    assert not await store.renew_lease("telegram", "a:1", T0 + 11, 10.0)  # a lost it


async def test_renewal_only_while_held_and_unexpired(store: Any) -> None:
    assert not await store.renew_lease("telegram", "a:1", T0, 10.0)  # nobody holds it
    assert await store.acquire_lease("telegram", "a:1", T0, 10.0)
    assert await store.renew_lease("telegram", "a:1", T0 + 9, 10.0)
    assert not await store.renew_lease("telegram", "b:2", T0 + 9, 10.0)
    [lease] = await store.leases()
    assert lease.expires_at == T0 + 19
    # Expired, even if nobody took it: renewing is refused (take it again instead).
    assert not await store.renew_lease("telegram", "a:1", T0 + 20, 10.0)


async def test_release_and_take_over_from_a_gone_holder(store: Any) -> None:
    assert await store.acquire_lease("telegram", "a:1", T0, 10.0)
    assert await store.acquire_lease("discord", "a:1", T0, 10.0)
    assert await store.acquire_lease("other", "c:3", T0, 10.0)
    assert not await store.release_lease("telegram", "b:2")  # not b's to give
    assert await store.release_lease("telegram", "a:1")
    assert await store.acquire_lease("telegram", "b:2", T0 + 1, 10.0)  # free at once
    assert not await store.take_lease("discord", "z:9", "b:2", T0 + 1, 10.0)  # not z's
    assert await store.take_lease("discord", "a:1", "b:2", T0 + 1, 10.0)
    assert await store.release_leases("b:2") == 2
    assert [(x.name, x.holder) for x in await store.leases()] == [("other", "c:3")]


async def test_one_of_many_racing_for_a_lease_gets_it(tmp_path: Path) -> None:
    """Separate connections (as separate processes have) ask at once: one holder."""
    async with contextlib.AsyncExitStack() as stack:
        stores = [
            await stack.enter_async_context(SqliteJobStore(tmp_path / "race.db")) for _ in range(5)
        ]
        won = await asyncio.gather(
            *(s.acquire_lease("telegram", f"h:{i}", T0, 10.0) for i, s in enumerate(stores))
        )
    assert sum(won) == 1


async def test_heartbeats_are_listed_and_forgotten(store: Any) -> None:
    await store.restart_replica("a:1", T0, '{"role": "run"}')
    await store.heartbeat("a:1", T0 + 2, '{"role": "run"}')
    await store.heartbeat("b:2", T0 + 1, '{"role": "generate"}')
    assert await store.replicas() == [
        Replica("a:1", T0, T0 + 2, '{"role": "run"}'),
        Replica("b:2", T0 + 1, T0 + 1, '{"role": "generate"}'),
    ]
    assert [r.name for r in await store.replicas(T0 + 1.5)] == ["a:1"]
    await store.restart_replica("a:1", T0 + 5, "{}")  # the same name starts again
    [again, _] = await store.replicas()
    assert (again.started_at, again.heartbeat_at) == (T0 + 5, T0 + 5)
    await store.forget_replica("a:1")
    assert [r.name for r in await store.replicas()] == ["b:2"]


# -- who is alive -----------------------------------------------------------------------------


def test_owners_judge_this_host_by_pid_and_others_by_heartbeat() -> None:
    clock = FakeClock(T0)
    owners = Owners("here:10", host="here", clock=clock.now, pid_alive=lambda pid: pid in (10, 11))
    owners.seen([Replica("there:5", T0, T0 - 3), Replica("here:12", T0, T0)])
    assert owners.alive("here:10") and owners.alive("here:11")
    assert not owners.alive("here:12")  # its heartbeat is fresh, but its pid is gone
    assert owners.alive("there:5")
    assert not owners.alive("there:6")  # never beat
    assert not owners.alive("")
    clock.advance(7.5)  # there:5's heartbeat is 10.5 s old
    assert not owners.alive("there:5")
    assert not owners.another_alive("here:10")  # this name before start: a past life


async def test_a_gone_replicas_submit_is_interrupted_while_running(settings: Settings) -> None:
    """A replica on another host died during a submit: once its heartbeat is stale, the
    running replica's periodic recovery interrupts the job (never sends it again); one
    whose owner still beats is left alone."""
    clock = FakeClock(T0)
    async with open_core(settings, clock=clock) as core:
        for job_id, owner in (("gone", "far:1"), ("beating", "far:2")):
            job = make_job(job_id, state=JobState.SUBMITTING, due=T0)
            job.owner = owner
            await core.store.create(job)
        await core.store.heartbeat("far:1", T0, "{}")
        await core.store.heartbeat("far:2", T0, "{}")
        await core.recover_once()
        assert {j.state for j in await core.store.recent(10)} == {JobState.SUBMITTING}
        clock.advance(11)
        await core.store.heartbeat("far:2", clock.now(), "{}")
        await core.recover_once()
        gone, beating = await core.store.get("gone"), await core.store.get("beating")
    assert gone is not None and gone.state is JobState.INTERRUPTED
    assert gone.delivery is Delivery.PENDING
    assert beating is not None and beating.state is JobState.SUBMITTING


async def test_a_start_beside_a_running_replica_keeps_its_leases(settings: Settings) -> None:
    """A replica that starts while another runs leaves that one's claimed polls alone (it
    would poll them a second time); alone, it makes them due at once (a restart)."""
    clock = FakeClock(T0)
    async with SqliteJobStore(settings.database_path) as setup:
        job = make_job("claimed", state=JobState.RUNNING, due=T0 + 120)
        await setup.create(job)
        await setup.heartbeat("far:1", T0, '{"role": "run"}')
    async with open_core(settings, clock=clock) as core:
        kept = await core.store.get("claimed")
    assert kept is not None and kept.next_poll_at == T0 + 120
    clock.advance(60)  # far:1 is gone by now
    async with open_core(settings, clock=clock) as core:
        hurried = await core.store.get("claimed")
    assert hurried is not None and hurried.next_poll_at == T0 + 60


# -- LeaseKeeper and LeasedAdapter ------------------------------------------------------------


class FakeAdapter:
    """A ChatAdapter that records being entered and left."""

    def __init__(self, log: list[str], *, refuse: bool = False) -> None:
        self.platform = "telegram"
        self.log = log
        self.refuse = refuse
        self.connected = False

    async def stop_intake(self) -> None:
        self.log.append("stop intake")

    async def __aenter__(self) -> Self:
        if self.refuse:
            raise ConfigError("the token was refused")
        self.connected = True
        self.log.append("entered")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.connected = False
        self.log.append("left")


def replica(store: Any, name: str, clock: FakeClock, log: list[str], **kw: Any) -> LeasedAdapter:
    """A replica on host `test` whose peers all run (by pid): only expiry frees a lease."""
    owners = Owners(name, host="test", clock=clock.now, pid_alive=lambda pid: True)
    keeper = LeaseKeeper(store, "telegram", owners, clock, ttl_s=10.0)

    def make() -> AdapterSupervisor:
        return AdapterSupervisor(lambda: FakeAdapter(log, **kw), first_s=0.01, max_s=0.01)

    return LeasedAdapter(keeper, make, retry_s=0.01, renew_s=0.01)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(*adapters: LeasedAdapter) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(a.run()) for a in adapters]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_replica_holds_and_another_takes_over_after_expiry(store: Any) -> None:
    clock = FakeClock(T0)
    log_a: list[str] = []
    log_b: list[str] = []
    a = replica(store, "test:1", clock, log_a)
    b = replica(store, "test:2", clock, log_b)
    async with running(a) as [task_a]:
        await until(lambda: a.connected)
        async with running(b):
            await until(lambda: b.elsewhere == "test:1")
            assert not b.connected and log_b == []
            # a freezes (as if killed -9 on another host): it renews no more.
            task_a.cancel()
            a.keeper.held = False  # its cancellation must not release it: it was killed
            await asyncio.gather(task_a, return_exceptions=True)
            clock.advance(9.9)
            await asyncio.sleep(0.05)
            assert not b.connected  # not expired yet: b waits
            clock.advance(0.2)
            await until(lambda: b.connected)
            assert b.keeper.holder == "test:2"
    assert [(x.name, x.holder) for x in await store.leases()] == []  # b released it


async def test_a_stopping_replica_hands_over_at_once(store: Any) -> None:
    clock = FakeClock(T0)
    log_a: list[str] = []
    a = replica(store, "test:1", clock, log_a)
    b = replica(store, "test:2", clock, [])
    async with running(a):
        await until(lambda: a.connected)
        async with running(b):
            await until(lambda: b.elsewhere == "test:1")
            await a.stop_intake()  # the clock does not move: no expiry needed
            await until(lambda: b.connected)
            assert log_a == ["entered", "stop intake"]  # still there for deliveries in flight
    assert log_a == ["entered", "stop intake", "left"]


async def test_a_lost_lease_leaves_the_adapter_at_once(store: Any) -> None:
    clock = FakeClock(T0)
    log: list[str] = []
    a = replica(store, "test:1", clock, log)
    async with running(a):
        await until(lambda: a.connected)
        # Its lease expired (it was paused) and another replica took it.
        clock.advance(11)
        assert await store.acquire_lease("telegram", "test:2", clock.now(), 10.0)
        await until(lambda: not a.connected)
        assert log == ["entered", "left"]
        await until(lambda: a.elsewhere == "test:2")  # its next try finds the new holder
        assert (await store.leases())[0].holder == "test:2"


async def test_unrenewable_lease_is_dropped_before_it_can_expire(store: Any) -> None:
    """The store does not answer renewals: at ttl / 2 since the last one, the adapter is
    left (another replica may connect once the lease expires at ttl)."""
    clock = FakeClock(T0)
    log: list[str] = []
    a = replica(store, "test:1", clock, log)
    async with running(a):
        await until(lambda: a.connected)

        async def broken(*args: Any) -> bool:
            raise OSError("the database is away")

        a.keeper.store = type("Broken", (), {"renew_lease": staticmethod(broken)})()  # type: ignore[assignment]
        clock.advance(4.9)
        await asyncio.sleep(0.05)
        assert a.connected  # not renewed for 4.9 s: still within ttl / 2
        clock.advance(0.2)
        await until(lambda: not a.connected)
        assert log == ["entered", "left"]
        [lease] = await store.leases()
        assert lease.expires_at == T0 + 10  # the drop came before the lease could expire
        a.keeper.store = store  # the store is back: it takes the lease again
        await until(lambda: a.connected)
        assert log == ["entered", "left", "entered"]


async def test_a_gone_holder_on_this_host_is_taken_over_before_expiry(store: Any) -> None:
    clock = FakeClock(T0)
    assert await store.acquire_lease("telegram", "test:99", T0, 10.0)  # pid 99: gone
    owners = Owners("test:1", host="test", clock=clock.now, pid_alive=lambda pid: pid == 1)
    keeper = LeaseKeeper(store, "telegram", owners, clock)
    assert await keeper.acquire_once()
    assert keeper.held and (await store.leases())[0].holder == "test:1"


async def test_a_refused_configuration_ends_the_leased_adapter(store: Any) -> None:
    a = replica(store, "test:1", FakeClock(T0), [], refuse=True)
    with pytest.raises(ConfigError):
        await asyncio.wait_for(a.run(), 10)
    assert await store.leases() == []  # released on the way out
