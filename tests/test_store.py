"""The job store's contract, on both engines (SQLite and PostgreSQL: the `open_store`
fixture): migrations, claims, compare-and-set, recovery, whose jobs a process claims, the
inbox; and SQLite's durability settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.models import Delivery, Job, JobState, Kind
from storage.migrations import MIGRATIONS
from storage.pg_migrations import PG_MIGRATIONS
from storage.postgres import PostgresJobStore
from storage.sqlite import SqliteJobStore
from tests.helpers import origin

Store = SqliteJobStore | PostgresJobStore
OpenStore = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """A store (not yet open) on one database per test: each call another connection to it,
    as another process would have."""
    if request.param == "sqlite":
        return lambda **kw: SqliteJobStore(tmp_path / "a.db", **kw)
    url = str(request.getfixturevalue("pg_url"))
    return lambda **kw: PostgresJobStore(url, **kw)


def make_job(job_id: str, *, state: JobState = JobState.RECEIVED, due: float = 0.0) -> Job:
    return Job(
        id=job_id,
        kind=Kind.IMAGE,
        model="nanobanana",
        prompt="p",
        origin=origin(),
        state=state,
        created_at=due,
        updated_at=due,
        next_poll_at=due,
    )


def test_both_engines_have_every_migration() -> None:
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


async def test_migrations_wal_and_full_sync(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
        assert await store.schema_version() == len(MIGRATIONS)
        async with store.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with store.db.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2  # FULL
    async with SqliteJobStore(tmp_path / "a.db") as again:  # idempotent
        assert await again.schema_version() == len(MIGRATIONS)


async def test_opening_migrates_once_to_the_latest_version(open_store: OpenStore) -> None:
    async with open_store() as store:
        assert await store.schema_version() == len(MIGRATIONS)
    async with open_store() as again:  # idempotent
        assert await again.schema_version() == len(MIGRATIONS)


async def test_round_trip_keeps_every_field(open_store: OpenStore) -> None:
    async with open_store() as store:
        job = make_job("abc")
        job.result_urls = ["https://x/y.png"]
        job.price_usd, job.refunded_usd = 0.65, 0.65
        await store.create(job)
        assert await store.get("abc") == job


async def test_claims_are_leased_so_a_job_is_not_claimed_twice(open_store: OpenStore) -> None:
    async with open_store() as store:
        for i in range(5):
            await store.create(make_job(f"j{i}", due=float(i)))
        first = await store.claim_due_polls(now=10.0, limit=3, lease_s=60)
        second = await store.claim_due_polls(now=10.0, limit=10, lease_s=60)
        assert [j.id for j in first] == ["j0", "j1", "j2"]
        assert [j.id for j in second] == ["j3", "j4"]
        assert await store.claim_due_polls(now=69.0, limit=10, lease_s=60) == []
        assert len(await store.claim_due_polls(now=71.0, limit=10, lease_s=60)) == 5


async def test_save_with_expected_state_is_compare_and_set(open_store: OpenStore) -> None:
    async with open_store() as store:
        job = make_job("x")
        await store.create(job)
        a, b = make_job("x"), make_job("x")
        a.state, b.state = JobState.SUBMITTING, JobState.SUBMITTING
        results = await asyncio.gather(
            store.save(a, expect=[JobState.RECEIVED]), store.save(b, expect=[JobState.RECEIVED])
        )
        assert sorted(results) == [False, True]  # only one submitter wins


async def test_recover_interrupts_only_submits_of_dead_processes(open_store: OpenStore) -> None:
    async with open_store() as store:
        dead, alive = (
            make_job("dead", state=JobState.SUBMITTING),
            make_job("live", state=JobState.SUBMITTING),
        )
        dead.owner, alive.owner = "h:1", "h:2"
        await store.create(dead)
        await store.create(alive)
        out = await store.recover(5.0, owner_alive=lambda owner: owner == "h:2")
        assert [j.id for j in out] == ["dead"]
        got = await store.get("dead")
        assert (
            got is not None
            and got.state is JobState.INTERRUPTED
            and got.delivery is Delivery.PENDING
        )
        live = await store.get("live")
        assert live is not None and live.state is JobState.SUBMITTING


async def test_a_gone_process_claims_are_due_again_at_once(open_store: OpenStore) -> None:
    """A replica killed while it held polls and deliveries: the next look after it is
    known gone makes them due now (not when their 120 s leases end); a live one's stay."""
    async with open_store(claimer="h:1") as dead, open_store(claimer="h:2") as live:
        for job_id in ("a", "b", "c"):
            await dead.create(make_job(job_id, state=JobState.RUNNING))
        done = make_job("d", state=JobState.SUCCEEDED)
        done.delivery, done.next_poll_at, done.next_delivery_at = Delivery.PENDING, None, 0.0
        await dead.create(done)
        assert {j.id for j in await dead.claim_due_polls(1.0, 2, 120.0)} == {"a", "b"}
        assert [
            j.id for j in await dead.claim_due_deliveries(1.0, 5, 120.0, platforms={"test"})
        ] == ["d"]
        assert [j.id for j in await live.claim_due_polls(1.0, 5, 120.0)] == ["c"]
        # Nothing is due while h:1 is alive.
        assert await live.recover(2.0, owner_alive=lambda o: True, reschedule=False) == []
        assert await live.claim_due_polls(2.0, 5, 120.0) == []
        # h:1 is gone: its claims (not h:2's) are due at once, for anyone.
        await live.recover(3.0, owner_alive=lambda o: o == "h:2", reschedule=False)
        assert {j.id for j in await live.claim_due_polls(3.0, 5, 120.0)} == {"a", "b"}
        redelivered = await live.claim_due_deliveries(3.0, 5, 120.0, platforms={"test"})
        assert [j.id for j in redelivered] == ["d"]
        c = await live.get("c")
        assert c is not None and c.next_poll_at == 121.0  # the live claim kept its lease


async def test_a_status_delete_owed_is_kept_until_done(open_store: OpenStore) -> None:
    async with open_store() as store:
        for job_id in ("a", "b"):
            await store.create(make_job(job_id, state=JobState.SUCCEEDED))
        await store.owe_status_drop("b", 5.0)
        await store.owe_status_drop("a", 6.0)
        assert [j.id for j in await store.owed_status_drops("test")] == ["b", "a"]
        assert await store.owed_status_drops("telegram") == []
        await store.status_dropped("b")
        assert [j.id for j in await store.owed_status_drops("test")] == ["a"]
        job = await store.get("a")
        assert job is not None
        assert await store.save(job)  # a save of the job keeps what is owed
        assert [j.id for j in await store.owed_status_drops("test")] == ["a"]


async def test_each_process_claims_only_the_jobs_it_can_finish(open_store: OpenStore) -> None:
    """`generate` (only_owner) takes its own console jobs; `run` (owner_alive) takes every
    job but the console jobs of a live process."""
    jobs = {
        "chat": ("test", "gen:1"),  # a chat's job: always `run`'s
        "mine": ("console", "gen:1"),  # the live `generate` gen:1's own
        "other": ("console", "gen:2"),  # another live `generate`'s
        "orphan": ("console", "gen:3"),  # a `generate` that was killed
    }
    async with open_store() as setup:
        for job_id, (platform, owner) in jobs.items():
            job = make_job(job_id, state=JobState.RUNNING)
            job.origin = origin(platform)
            job.owner = owner
            job.delivery, job.next_delivery_at = Delivery.PENDING, 0.0
            await setup.create(job)
        for job_id in ("r-mine", "r-orphan"):
            job = make_job(job_id)
            job.origin, job.owner = origin("console"), f"gen:{1 if job_id == 'r-mine' else 3}"
            await setup.create(job)

    def alive(owner: str) -> bool:
        return owner in ("gen:1", "gen:2")

    async def claims(store: Store) -> tuple[set[str], set[str]]:
        polls = await store.claim_due_polls(10.0, 100, 1.0)
        deliveries = await store.claim_due_deliveries(
            10.0, 100, 1.0, platforms={"console", "telegram", "discord", "test"}
        )
        return {j.id for j in polls}, {j.id for j in deliveries}

    async with open_store(only_owner="gen:1") as gen:
        assert await claims(gen) == ({"mine", "r-mine"}, {"mine"})
    async with open_store(owner_alive=alive) as run:
        assert await claims(run) == ({"chat", "orphan", "r-orphan"}, {"chat", "orphan"})
    async with open_store(owner_alive=lambda owner: False) as alone:  # no process alive
        assert await claims(alone) == ({"other"}, {"other"})  # the rest leased for 1 s
        polls = await alone.claim_due_polls(12.0, 100, 1.0)
        assert {j.id for j in polls} == {"chat", "mine", "other", "orphan", "r-mine", "r-orphan"}


async def test_processes_opening_a_new_store_at_once_migrate_it_once(
    open_store: OpenStore,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        stores = await asyncio.gather(
            *(
                stack.enter_async_context(open_store())
                for _ in range(4)  # connections of their own, as separate processes have
            )
        )
        for store in stores:
            assert await store.schema_version() == len(MIGRATIONS)


async def test_the_inbox_keeps_each_item_once_until_done(open_store: OpenStore) -> None:
    async with open_store() as store:
        items = [(1, '{"a": "50% off?"}'), (2, "{}"), (3, "{}")]
        assert await store.inbox_add("tg", items, 10.0) == [1, 2, 3]
        assert await store.inbox_add("tg", [(2, "{}"), (4, "{}")], 11.0) == [4]  # 2 is kept
        assert await store.inbox_add("dc", [(2, "{}")], 11.0) == [2]  # another source
        await store.inbox_done("tg", [1, 3], 12.0)
        await store.inbox_done("tg", [1], 99.0)  # done once: its time stays
        assert await store.inbox_pending("tg") == [(2, "{}"), (4, "{}")]
        assert await store.inbox_prune(before=12.0) == 0
        assert await store.inbox_prune(before=12.5) == 2
        assert await store.inbox_pending("dc") == [(2, "{}")]


async def test_listings_and_counts(open_store: OpenStore) -> None:
    async with open_store() as store:
        for i, state in enumerate((JobState.RUNNING, JobState.SUCCEEDED, JobState.SUCCEEDED)):
            job = make_job(f"j{i}", state=state, due=100.0)  # one created_at: rowid decides
            job.submitted_at, job.finished_at = 100.0, 100.0 + 10 * i
            await store.create(job)
        assert [j.id for j in await store.recent(2)] == ["j2", "j1"]
        assert await store.count_unfinished() == 1
        assert sorted(await store.count_by_model_state()) == [
            ("nanobanana", "running", 1),
            ("nanobanana", "succeeded", 2),
        ]
        durations = await store.recent_durations(since=0.0, per_model=5)
        assert sorted(durations["nanobanana"]) == [10.0, 20.0]  # created at once: either order
        assert await store.next_due() == 100.0
        assert await store.next_due(after=100.0) is None  # only polls after `after`
        assert await store.ping()


async def test_a_request_key_makes_one_job(open_store: OpenStore) -> None:
    from bot.errors import DuplicateRequest

    async with open_store() as a, open_store() as b:
        jobs = [make_job(f"k{i}") for i in range(6)]
        for job in jobs:
            job.request_key = "tg:1:42"
        results: list[Any] = await asyncio.gather(
            *((a if i % 2 else b).create(job) for i, job in enumerate(jobs)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1
        refused = [r for r in results if r is not None]
        assert all(isinstance(r, DuplicateRequest) for r in refused)
        found = await a.find_request("tg:1:42")
        assert found is not None and {r.job_id for r in refused} == {found.id}
