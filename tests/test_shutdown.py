"""SIGTERM loses no paid work: `genrelay run` takes nothing new, lets a submit in flight
(GPT Image 2 blocks until the image exists) finish within SHUTDOWN_GRACE_S, then exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, JobState
from sandbox import SandboxGateway
from tests.conftest import running
from tests.helpers import RecordingSink, request
from tests.test_restart import _env

GPT_IMAGE_2 = "gpt-image-2"


async def _until_submitted(sandbox: SandboxGateway) -> None:
    async with asyncio.timeout(30):
        while not sandbox.create_calls():
            await asyncio.sleep(0.02)


async def test_sigterm_lets_a_synchronous_submit_finish_then_exits_0(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    async with open_core(settings) as core:  # a chat's request, recorded before `run` starts
        job = await core.service.submit(request(model=GPT_IMAGE_2))
    sandbox.script_next(duration=3.0)  # the call blocks this long
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=_env(settings, tmp_path), stdout=err, stderr=err
        )
        await _until_submitted(sandbox)
        run.send_signal(signal.SIGTERM)
        await asyncio.wait_for(run.wait(), 60)
    text = log.read_text()
    assert run.returncode == 0, text
    assert "stopping: waiting up to 30 s for 1 submits" in text
    async with open_core(settings) as core:
        done = await core.store.get(job.id)
    assert done is not None
    assert done.state is JobState.SUCCEEDED and done.result_urls
    assert done.delivery is Delivery.PENDING  # no chat was connected: the next process sends it
    assert len(sandbox.create_calls()) == 1


async def test_a_submit_still_running_when_the_grace_ends_is_cancelled_and_logged(
    settings: Settings, sandbox: SandboxGateway, log_records: pytest.LogCaptureFixture
) -> None:
    sandbox.script_next(duration=30.0)
    async with open_core(settings) as core, running(core):
        core.notifier.register(RecordingSink())
        job = await core.service.submit(request(model=GPT_IMAGE_2))
        await _until_submitted(sandbox)
        await core.stop(grace_s=0.2)
        assert await core.tracker.run_once() == 0  # nothing new is taken
        left = await core.store.get(job.id)
    assert left is not None and left.state is JobState.SUBMITTING  # the next one: interrupted
    assert f"job-{job.id} still running after 0.2 s; cancelled" in log_records.text


async def test_stopping_takes_no_new_job_and_waits_for_nothing_when_idle(
    settings: Settings, sandbox: SandboxGateway
) -> None:
    async with open_core(settings) as core, running(core):
        await core.stop(grace_s=30)
        job = await core.service.submit(request(model="nanobanana"))
        await core.tracker.run_once()
        await core.notifier.run_once()
        assert (await core.store.get(job.id)).state is JobState.RECEIVED  # type: ignore[union-attr]
    assert sandbox.create_calls() == []


async def test_a_second_signal_stops_without_waiting(
    settings: Settings, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    async with open_core(settings) as core:
        job = await core.service.submit(request(model=GPT_IMAGE_2))
    sandbox.script_next(duration=120.0)
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=_env(settings, tmp_path), stdout=err, stderr=err
        )
        await _until_submitted(sandbox)
        run.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            while "stopping: waiting up to" not in log.read_text():
                await asyncio.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        await asyncio.wait_for(run.wait(), 30)
    text = log.read_text()
    assert run.returncode == 0, text
    assert "a second signal: stopping without waiting" in text
    async with open_core(settings) as core:  # the next process: the cut-off submit is interrupted
        left = await core.store.get(job.id)
    assert left is not None and left.state is JobState.INTERRUPTED
    assert len(sandbox.create_calls()) == 1
