"""Nothing is lost in a crash: a job in flight is finished by the next process, delivered
once, submitted once; `kill -9` of `genrelay generate` after submit, then `genrelay run`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import API_KEY, running
from tests.helpers import RecordingSink, request, wait_delivered


async def test_job_in_flight_is_finished_by_the_next_service_once(
    settings: Settings, sandbox: SandboxGateway
) -> None:
    sandbox.script_next(duration=0.6)
    async with open_core(settings) as first, running(first):
        job = await first.service.submit(request(kind=Kind.VIDEO, model="veo_fast"))
        async with asyncio.timeout(5):
            while not sandbox.create_calls():
                await asyncio.sleep(0.01)
            while (await first.store.get(job.id)).state is JobState.SUBMITTING:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
    # The first service stopped with the job queued upstream and nothing delivered.
    sink = RecordingSink()
    async with open_core(settings) as second, running(second):
        second.notifier.register(sink)
        done = await wait_delivered(second, job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.delivery is Delivery.DELIVERED
    assert len(sink.delivered) == 1
    assert len(sandbox.create_calls()) == 1


async def test_finished_but_undelivered_job_is_delivered_after_restart(
    settings: Settings, sandbox: SandboxGateway
) -> None:
    async with open_core(settings) as first, running(first):
        job = await first.service.submit(request(model="nanobanana"))
        async with asyncio.timeout(5):
            while (await first.store.get(job.id)).state is not JobState.SUCCEEDED:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
    # No sink for the "test" platform was registered: the delivery waited.
    sink = RecordingSink()
    async with open_core(settings) as second, running(second):
        second.notifier.register(sink)
        done = await wait_delivered(second, job.id)
    assert done.delivery is Delivery.DELIVERED
    assert [j.id for j, _ in sink.delivered] == [job.id]
    assert len(sandbox.create_calls()) == 1


async def test_delivery_is_retried_then_given_up(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway
) -> None:
    settings = make_settings(aa_base_url=sandbox.base_url, delivery_max_attempts=3)
    flaky = RecordingSink(fail_times=2)
    async with open_core(settings) as core, running(core):
        core.notifier.register(flaky)
        job = await core.service.submit(request(model="nanobanana"))
        done = await wait_delivered(core, job.id)
    assert done.delivery is Delivery.DELIVERED
    assert flaky.attempts == 3 and len(flaky.delivered) == 1

    broken = RecordingSink(fail_times=99)
    async with open_core(settings) as core, running(core):
        core.notifier.register(broken)
        job = await core.service.submit(request(model="nanobanana"))
        done = await wait_delivered(core, job.id)
    assert done.delivery is Delivery.UNDELIVERABLE
    assert broken.attempts == 3
    assert done.result_urls  # the result stays in the store


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AA_", "DATABASE_"))}
    env.update(
        AA_BASE_URL=settings.aa_base_url,
        AA_API_KEY=API_KEY,
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(tmp_path / "data"),
        POLL_POLICY="fixed",  # the sandbox runs far faster than the catalog's typical times
        POLL_FIRST_DELAY_S="0.1",
        POLL_INTERVAL_S="0.1",
        HTTP_PORT="0",
        LOG_LEVEL="INFO",
    )
    return env


async def _cli(env: dict[str, str], *args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kill_9_after_submit_then_run_finishes_the_job(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    sandbox.script_next(duration=3.0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "generate",
        "-m",
        "veo_fast",
        "-p",
        "a paper boat in the rain",
        "--json",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        while not sandbox.create_calls():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the create answer is back and recorded
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            while True:
                code, out, _ = await _cli(env, "jobs", "--json")
                jobs = json.loads(out)
                if jobs and jobs[0]["status"] == "succeeded" and jobs[0]["delivery"] == "delivered":
                    break
                await asyncio.sleep(0.2)
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 10)
    assert run.returncode == 0, err.decode()
    (job,) = jobs
    assert set(job) >= {
        "id",
        "model",
        "status",
        "result_urls",
        "error",
        "upstream_task_id",
        "price_usd",
        "refunded_usd",
        "delivery",
        "created_at",
        "updated_at",
    }
    assert job["model"] == "veo_fast" and job["result_urls"]
    assert len(sandbox.create_calls()) == 1
    assert API_KEY not in out and API_KEY not in err.decode()


async def test_kill_9_during_submit_is_interrupted_not_resent(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    env = _env(settings, tmp_path)
    sandbox.inject_fault("POST", "/api/v1/aa/openapi/sora/tasks", delay=30, after_processing=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "generate",
        "-m",
        "sora_fast",
        "-p",
        "a lantern festival",
        env={**env, "GATEWAY_TIMEOUT_S": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        while not sandbox.tasks:
            await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    async with open_core(settings) as core:
        (job,) = await core.store.recent(5)
        assert job.state is JobState.INTERRUPTED
        await core.tracker.run_once()
        await core.tracker.drain()
    code, out, _ = await _cli(env, "jobs", "--json")
    assert json.loads(out)[0]["status"] == "interrupted"
    assert len(sandbox.create_calls()) == 1


async def test_a_platform_that_connects_late_gets_its_waiting_results_at_once(
    core: Core, sandbox: SandboxGateway
) -> None:
    job = await core.service.submit(request(model="nanobanana", platform="late"))
    async with asyncio.timeout(5):  # finished, its delivery waiting for a sink
        while (waiting := await core.store.get(job.id)) is None or not waiting.terminal:
            await asyncio.sleep(0.02)
    for _ in range(3):  # no sink here: nothing claims it, so nothing pushes it back
        await core.notifier.run_once()
    waiting = await core.store.get(job.id)
    assert waiting is not None and waiting.delivery is Delivery.PENDING
    assert (waiting.next_delivery_at or 0) <= core.clock.now()
    sink = RecordingSink("late")
    core.notifier.register(sink)
    done = await wait_delivered(core, job.id, timeout=3)  # at once, not after a backoff
    assert done.delivery is Delivery.DELIVERED and len(sink.delivered) == 1
