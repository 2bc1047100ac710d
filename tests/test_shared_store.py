"""One SQLite file, several processes: a store another process keeps locked slows the
service down but never stops it, and each process takes only the jobs it can finish
(`genrelay run` beside `genrelay generate`, several `generate`s at once). The tests of whose
jobs a process takes run on a PostgreSQL database too (`database_url`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, JobState, Kind
from bot.runner import Runner
from sandbox import SandboxGateway
from storage.sqlite import SqliteJobStore
from tests.conftest import running
from tests.helpers import RecordingSink, request, wait_delivered
from tests.test_restart import _cli, _env
from tests.test_store import make_job

BUSY = "the job store is busy"

# Another process takes the file's write lock and keeps it until its stdin closes.
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


@asynccontextmanager
async def locked(path: str) -> AsyncIterator[None]:
    """The database at `path` write-locked by another process for the block's duration."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 20) == b"held\n"
        yield
    finally:
        holder.stdin.close()
        await asyncio.wait_for(holder.wait(), 20)
    assert holder.returncode == 0


async def until_true(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_store_locked_past_busy_timeout_slows_the_core_but_never_stops_it(
    make_settings: Callable[..., Settings],
    sandbox: SandboxGateway,
    log_records: pytest.LogCaptureFixture,
) -> None:
    caplog = log_records
    settings = make_settings(aa_base_url=sandbox.base_url, database_busy_timeout_s=0.1)
    sandbox.script_next(duration=0.5)
    sink = RecordingSink()
    async with open_core(settings) as core:
        core.notifier.register(sink)
        async with Runner(core) as runner:  # `until` raises if the core's loops stop
            job = await core.service.submit(request(kind=Kind.VIDEO, model="veo_fast"))
            await runner.until(until_true(lambda: bool(sandbox.create_calls())))
            async with locked(settings.database_path):
                await runner.until(until_true(lambda: BUSY in caplog.text))
                # Held for many busy timeouts: the task ends upstream meanwhile, and every
                # write of the tracker and the notifier waits past its patience, again and
                # again.
                await runner.until(asyncio.sleep(1.5))
            done = await runner.until(wait_delivered(core, job.id, timeout=20))
    assert done.state is JobState.SUCCEEDED and done.delivery is Delivery.DELIVERED
    assert [j.id for j, _ in sink.delivered] == [job.id]
    assert len([r for r in caplog.records if BUSY in r.getMessage()]) == 1
    assert "the job store is free again" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_new_request_waits_for_a_locked_store(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway
) -> None:
    settings = make_settings(aa_base_url=sandbox.base_url, database_busy_timeout_s=0.1)
    async with open_core(settings) as core, running(core):
        core.notifier.register(RecordingSink())
        async with locked(settings.database_path):
            submit = asyncio.create_task(core.service.submit(request(model="nanobanana")))
            await asyncio.sleep(0.5)  # several busy timeouts
            assert not submit.done()
        job = await submit
        done = await wait_delivered(core, job.id, timeout=20)
    assert done.state is JobState.SUCCEEDED


def _generate(prompt: str) -> list[str]:
    return ["generate", "-m", "nanobanana", "-p", prompt, "--json"]


@asynccontextmanager
async def genrelay_run(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Path]:
    """`genrelay run` in its own process, started and ready; its log is the yielded file."""
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, stdout=err, stderr=err
        )
        try:
            async with asyncio.timeout(30):
                while "following jobs only" not in log.read_text():
                    assert run.returncode is None, log.read_text()
                    await asyncio.sleep(0.05)
            yield log
        finally:
            if run.returncode is None:
                run.terminate()
            await asyncio.wait_for(run.wait(), 30)
    assert run.returncode == 0, log.read_text()


async def test_generate_beside_run_on_one_database_gets_its_own_job(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path, database_url: str
) -> None:
    env = _env(settings, tmp_path)
    env["DATABASE_URL"] = database_url
    async with genrelay_run(env, tmp_path) as log:
        code, out, err = await _cli(env, *_generate("a kite over dunes"), timeout=60)
        assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded" and result["result_urls"]
    assert "delivered to console" not in log.read_text()  # `run` left it to its asker
    code, out, _ = await _cli(env, "jobs", "--json")
    (job,) = json.loads(out)
    assert job["id"] == result["id"] and job["delivery"] == "delivered"
    assert len(sandbox.create_calls()) == 1


async def test_several_generates_at_once_each_get_their_own_job(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    # One operator, five terminals: a chat's per-person limits (2 at once by default) do
    # not apply at the terminal.
    env = _env(settings, tmp_path)
    prompts = [f"a lighthouse, take {n}" for n in range(5)]
    results = await asyncio.gather(*(_cli(env, *_generate(p), timeout=90) for p in prompts))
    for (code, out, err), prompt in zip(results, prompts, strict=True):
        assert code == 0, err
        job = json.loads(out)
        assert job["status"] == "succeeded" and job["prompt"] == prompt
    code, out, _ = await _cli(env, "jobs", "--json")
    jobs = json.loads(out)
    assert len(jobs) == 5
    assert all(j["status"] == "succeeded" and j["delivery"] == "delivered" for j in jobs)
    assert len(sandbox.create_calls()) == 5


async def test_a_generate_starting_leaves_the_services_schedule_alone(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, database_url: str
) -> None:
    settings = make_settings(aa_base_url=sandbox.base_url, database_url=database_url)
    async with open_core(settings) as core:  # the service: a delivery waits out Telegram's 429
        job = await core.service.submit(request(model="nanobanana"))
        job.state, job.delivery = JobState.SUCCEEDED, Delivery.PENDING
        job.next_delivery_at = core.clock.now() + 300
        await core.store.save(job)
    async with open_core(settings, own_jobs_only=True) as gen:  # `genrelay generate` starts
        after = await gen.store.get(job.id)
    assert after is not None and after.next_delivery_at == job.next_delivery_at


async def test_a_write_called_off_while_it_waits_for_the_lock_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    async with SqliteJobStore(path, busy_timeout_ms=10_000) as store:
        async with locked(str(path)):
            waiting = asyncio.create_task(store.set_status_message("nope", "1"))
            await asyncio.sleep(0.3)  # inside SQLite's busy wait for the lock
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        await store.create(make_job("next"))  # the next write goes through
        assert [j.id for j in await store.recent(5)] == ["next"]
