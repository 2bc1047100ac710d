"""The SQLite job store: migrations, durability settings, claims and compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from bot.models import Delivery, Job, JobState, Kind
from storage.migrations import MIGRATIONS
from storage.sqlite import SqliteJobStore
from tests.helpers import origin


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


async def test_migrations_wal_and_full_sync(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
        assert await store.schema_version() == len(MIGRATIONS)
        async with store.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with store.db.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2  # FULL
    async with SqliteJobStore(tmp_path / "a.db") as again:  # idempotent
        assert await again.schema_version() == len(MIGRATIONS)


async def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
        job = make_job("abc")
        job.result_urls = ["https://x/y.png"]
        job.price_usd, job.refunded_usd = 0.65, 0.65
        await store.create(job)
        assert await store.get("abc") == job


async def test_claims_are_leased_so_a_job_is_not_claimed_twice(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
        for i in range(5):
            await store.create(make_job(f"j{i}", due=float(i)))
        first = await store.claim_due_polls(now=10.0, limit=3, lease_s=60)
        second = await store.claim_due_polls(now=10.0, limit=10, lease_s=60)
        assert [j.id for j in first] == ["j0", "j1", "j2"]
        assert [j.id for j in second] == ["j3", "j4"]
        assert await store.claim_due_polls(now=69.0, limit=10, lease_s=60) == []
        assert len(await store.claim_due_polls(now=71.0, limit=10, lease_s=60)) == 5


async def test_save_with_expected_state_is_compare_and_set(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
        job = make_job("x")
        await store.create(job)
        a, b = make_job("x"), make_job("x")
        a.state, b.state = JobState.SUBMITTING, JobState.SUBMITTING
        results = await asyncio.gather(
            store.save(a, expect=[JobState.RECEIVED]), store.save(b, expect=[JobState.RECEIVED])
        )
        assert sorted(results) == [False, True]  # only one submitter wins


async def test_recover_interrupts_only_submits_of_dead_processes(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "a.db") as store:
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


async def test_each_process_claims_only_the_jobs_it_can_finish(tmp_path: Path) -> None:
    """`generate` (only_owner) takes its own console jobs; `run` (owner_alive) takes every
    job but the console jobs of a live process."""
    jobs = {
        "chat": ("test", "gen:1"),  # a chat's job: always `run`'s
        "mine": ("console", "gen:1"),  # the live `generate` gen:1's own
        "other": ("console", "gen:2"),  # another live `generate`'s
        "orphan": ("console", "gen:3"),  # a `generate` that was killed
    }
    async with SqliteJobStore(tmp_path / "a.db") as setup:
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

    async def claims(store: SqliteJobStore) -> tuple[set[str], set[str]]:
        polls = await store.claim_due_polls(10.0, 100, 1.0)
        deliveries = await store.claim_due_deliveries(
            10.0, 100, 1.0, platforms={"console", "telegram", "discord", "test"}
        )
        return {j.id for j in polls}, {j.id for j in deliveries}

    async with SqliteJobStore(tmp_path / "a.db", only_owner="gen:1") as gen:
        assert await claims(gen) == ({"mine", "r-mine"}, {"mine"})
    async with SqliteJobStore(tmp_path / "a.db", owner_alive=alive) as run:
        assert await claims(run) == ({"chat", "orphan", "r-orphan"}, {"chat", "orphan"})


async def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        stores = await asyncio.gather(
            *(
                stack.enter_async_context(SqliteJobStore(tmp_path / "new.db"))
                for _ in range(4)  # one connection each, as separate processes have
            )
        )
        for store in stores:
            assert await store.schema_version() == len(MIGRATIONS)
