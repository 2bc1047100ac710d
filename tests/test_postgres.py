"""The PostgreSQL store where it differs from SQLite: several processes at once (two stores,
two pools, as two replicas have) claim each job and delivery once and keep limits, budgets,
entries and votes atomic; an older schema is migrated with its rows; `genrelay migrate` and
`generate` run on it; its password is never shown. Its shared contract is test_store.py's."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest

from bot.community import Quota, Refusal
from bot.config import Settings
from bot.errors import ConfigError
from bot.main.cli import main
from bot.models import Delivery, Job, JobState, Kind
from bot.sessions import Session, VoteOutcome, VoteRefusal
from sandbox import SandboxGateway
from storage.pg_connection import PgConnection, to_psycopg
from storage.pg_migrations import PG_MIGRATIONS, migrate
from storage.postgres import PostgresJobStore
from tests.helpers import origin
from tests.test_restart import _cli, _env


def make_job(
    job_id: str,
    *,
    state: JobState = JobState.RECEIVED,
    chat: str = "c1",
    user: str = "u1",
    price: float | None = None,
) -> Job:
    return Job(
        id=job_id,
        kind=Kind.IMAGE,
        model="nanobanana",
        prompt="p",
        origin=origin(user=user, chat=chat),
        state=state,
        created_at=1.0,
        updated_at=1.0,
        next_poll_at=0.0,
        price_usd=price,
    )


async def gather_all(*calls: object) -> list[object]:
    """Run the calls at once; an exception is returned in its place (and then fails the
    test's assertions), never hidden."""
    return list(await asyncio.gather(*calls, return_exceptions=True))  # type: ignore[arg-type]


def test_placeholders_are_translated_outside_quotes_and_percent_is_escaped() -> None:
    assert to_psycopg("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"
    )
    assert to_psycopg("SELECT '?', 'it''s ?', \"odd?name\" FROM t WHERE x LIKE '5%' AND y = ?") == (
        "SELECT '?', 'it''s ?', \"odd?name\" FROM t WHERE x LIKE '5%%' AND y = %s"
    )


async def test_two_stores_claim_each_due_job_once(pg_url: str) -> None:
    """200 due jobs (100 running, 100 waiting in 10 chats), claimed by 12 claimers on two
    stores at once, a few at a time: each job is claimed by exactly one."""
    async with PostgresJobStore(pg_url) as a, PostgresJobStore(pg_url) as b:
        ids = [f"j{i:03}" for i in range(200)]
        await gather_all(
            *(
                a.create(
                    make_job(
                        job_id,
                        state=JobState.RUNNING if i % 2 else JobState.RECEIVED,
                        chat=f"c{i % 10}",
                    )
                )
                for i, job_id in enumerate(ids)
            )
        )
        claimed: list[str] = []

        async def claimer(store: PostgresJobStore) -> None:
            while jobs := await store.claim_due_polls(10.0, 7, 1000.0):
                claimed.extend(j.id for j in jobs)

        assert await gather_all(*(claimer(s) for s in (a, b) for _ in range(6))) == [None] * 12
        assert sorted(claimed) == ids
        assert await a.claim_due_polls(10.0, 1000, 1000.0) == []


async def test_two_stores_keep_each_chats_concurrency(pg_url: str) -> None:
    """Chats that may run 1 job at once, each with two waiting console jobs: one of a live
    `generate` (gen:1, which only it may start) and an older one of a dead one (which `run`
    takes first). Both processes claim at once, in 12 rounds of 8 new chats: one job starts
    in each chat."""
    async with (
        PostgresJobStore(pg_url, default_chat_concurrency=1, only_owner="gen:1") as gen,
        PostgresJobStore(pg_url, default_chat_concurrency=1, owner_alive=lambda o: False) as run,
    ):
        for n in range(12):
            chats = [f"r{n}c{i}" for i in range(8)]
            for chat in chats:
                for owner, user, at in (("gen:2", "u2", 1.0), ("gen:1", "u1", 2.0)):
                    job = make_job(f"{owner}-{chat}", chat=chat, user=user)
                    job.origin = origin("console", user=user, chat=chat)
                    job.owner, job.created_at = owner, at
                    await gen.create(job)
            results = await gather_all(
                gen.claim_due_polls(10.0, 100, 1000.0), run.claim_due_polls(10.0, 100, 1000.0)
            )
            started = [j for r in results for j in r]  # type: ignore[attr-defined]
            assert sorted(j.origin.chat_id for j in started) == chats
        assert {await gen.scope_load("console", "r11c7", 10.0)} == {(1, 1)}


async def test_two_stores_deliver_each_job_once(pg_url: str) -> None:
    async with PostgresJobStore(pg_url) as a, PostgresJobStore(pg_url) as b:
        ids = [f"d{i:03}" for i in range(120)]
        for job_id in ids:
            job = make_job(job_id, state=JobState.SUCCEEDED)
            job.delivery, job.next_delivery_at = Delivery.PENDING, 0.0
            await a.create(job)
        claimed: list[str] = []

        async def claimer(store: PostgresJobStore) -> None:
            while jobs := await store.claim_due_deliveries(10.0, 5, 1000.0, platforms={"test"}):
                claimed.extend(j.id for j in jobs)

        assert await gather_all(*(claimer(s) for s in (a, b) for _ in range(6))) == [None] * 12
        assert sorted(claimed) == ids


def admitted(results: Sequence[object]) -> int:
    assert all(r is None or isinstance(r, Refusal) for r in results), results
    return sum(r is None for r in results)


async def test_admission_from_two_stores_keeps_limits_and_budgets_exact(pg_url: str) -> None:
    """40 requests at once from two stores against a limit of 5 jobs at once per person,
    then against a chat budget of $5 at $1 a job: exactly 5 admitted each time."""
    async with PostgresJobStore(pg_url) as a, PostgresJobStore(pg_url) as b:
        per_person = Quota(since=0.0, user_unfinished=5)
        results = await gather_all(
            *((a, b)[i % 2].admit(make_job(f"p{i:02}"), per_person) for i in range(40))
        )
        assert admitted(results) == 5
        budget = Quota(since=0.0, chat_budget_usd=5.0)
        results = await gather_all(
            *(
                (a, b)[i % 2].admit(
                    make_job(f"b{i:02}", chat="c2", user=f"u{i}", price=1.0), budget
                )
                for i in range(40)
            )
        )
        assert admitted(results) == 5
        assert await a.spend(0.0, platform="test", scope_id="c2") == 5.0


async def test_session_entries_and_votes_from_two_stores_are_exact(pg_url: str) -> None:
    """A session with at most 3 entries per person: 12 people ask 3 times each at once from
    two stores: 36 entries numbered 1..36. Then one person presses ❤️ on one entry 10 times
    at once: toggled 10 times, it ends where it began."""
    async with PostgresJobStore(pg_url) as a, PostgresJobStore(pg_url) as b:
        session = Session(
            id="s1",
            gallery_key="g" * 20,
            platform="test",
            chat_id="c1",
            thread_id=None,
            scope_id="c1",
            theme="sea",
            started_by="u0",
            started_by_name=None,
            started_at=0.0,
            ends_at=1000.0,
            budget_usd=None,
            per_person=3,
            video=True,
        )
        assert await a.create_session(session) is None
        jobs = [make_job(f"e{i:02}", user=f"u{i % 12}") for i in range(48)]
        results = await gather_all(
            *((a, b)[i % 2].admit(job, Quota(since=0.0)) for i, job in enumerate(jobs))
        )
        assert admitted(results) == 36
        entries = await b.session_entries("s1")
        assert [e.number for e in entries] == list(range(1, 37))
        assert max(sum(e.author_id == f"u{u}" for e in entries) for u in range(12)) == 3
        target = entries[0].job.id
        votes = await gather_all(
            *((a, b)[i % 2].toggle_vote(target, "fan", 5.0) for i in range(10))
        )
        assert all(isinstance(v, VoteOutcome) for v in votes), votes
        assert sorted(v.votes for v in votes if isinstance(v, VoteOutcome)) == [0] * 5 + [1] * 5
        entry = await a.entry_for_job(target)
        assert entry is not None and entry.votes == 0
        assert isinstance(await a.toggle_vote(target, entry.author_id, 5.0), VoteRefusal)


async def test_an_older_schema_is_migrated_with_its_rows_intact(pg_url: str) -> None:
    """A database at schema 5 (before the inbox, request keys and sessions) with a job in
    it: opening it applies 6 and 7 and keeps the job."""
    old = PgConnection(pg_url)
    await old._open_pool(5.0)
    try:
        assert await migrate(old, upto=5) == 5
        async with old.transaction() as db:
            await db.execute(
                "INSERT INTO jobs (id, kind, model, prompt, origin, platform, chat_id, user_id,"
                " scope_id, state, created_at, updated_at, price_usd)"
                " VALUES (?, 'image', 'nanobanana', 'a 100% fox?', ?, 'test', 'c1', 'u1', 'c1',"
                " 'succeeded', 1.5, 2.5, 0.04)",
                ("old1", json.dumps(origin().to_dict())),
            )
    finally:
        await old._close_pool()
    async with PostgresJobStore(pg_url) as store:
        assert await store.schema_version() == len(PG_MIGRATIONS)
        job = await store.get("old1")
        assert job is not None
        assert (job.prompt, job.state, job.price_usd, job.created_at) == (
            "a 100% fox?",
            JobState.SUCCEEDED,
            0.04,
            1.5,
        )
        assert job.request_key is None and job.not_found_streak == 0
        assert await store.inbox_add("tg", [(1, "{}")], 3.0) == [1]  # migration 6's table


async def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    store = PostgresJobStore("postgresql://bob:hunter22@127.0.0.1:1/db", connect_timeout_s=0.5)
    with pytest.raises(ConfigError) as info:
        async with store:
            pass
    assert "postgresql://bob:***@127.0.0.1:1/db" in str(info.value)
    assert "hunter22" not in str(info.value)


async def test_migrate_then_generate_and_jobs_on_postgresql(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path, pg_url: str
) -> None:
    """The CLI on DATABASE_URL=postgresql://… (with a password, which trust authentication
    ignores): `migrate` prints the version, `generate` makes a job through the whole core,
    `jobs` lists it; the password shows nowhere."""
    env = _env(settings, tmp_path)
    env["DATABASE_URL"] = pg_url
    if "GENRELAY_TEST_PG" not in os.environ:  # CI's server trusts 127.0.0.1
        env["DATABASE_URL"] = pg_url.replace("://postgres@", "://postgres:pw-s3cret@")
    env["LOG_LEVEL"] = "DEBUG"
    code, out, err = await _cli(env, "migrate")
    assert code == 0, err
    assert out.endswith(f": schema version {len(PG_MIGRATIONS)}\n") and out.startswith(
        "PostgreSQL "
    )
    code, out, err = await _cli(env, "generate", "-m", "nanobanana", "-p", "a fox", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "succeeded"
    code, listed, err2 = await _cli(env, "jobs", "--json")
    assert [j["prompt"] for j in json.loads(listed)] == ["a fox"]
    for text in (out, err, listed, err2):
        assert "pw-s3cret" not in text


def test_postgresql_urls_are_taken_and_other_engines_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in ("postgresql://u:pw@db:5432/genrelay", "postgres://u:pw@db/genrelay"):
        s = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        assert s.database_engine == "postgresql"
        assert "pw" in s.secrets()  # the log filter hides it
    s = Settings(_env_file=None, database_url="postgresql://u@db/g?password=p%40ss")  # type: ignore[call-arg]
    assert "p@ss" in s.secrets()
    monkeypatch.setenv("DATABASE_URL", "mysql://u:topsecret@db/g")
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL: must be a sqlite:/// URL (one machine) or a postgresql:// URL" in err
    assert "got scheme mysql" in err and "topsecret" not in err


def test_the_test_server_is_reached(pg_url: str) -> None:
    """The fixture's schema is where the store's tables go (search_path), empty at first."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None and str(row[0]).startswith("genrelay_test_")
