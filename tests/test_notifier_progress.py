"""The notifier's progress updates: at most one per job on its way, the newest one waiting
behind it (so a place in line never stays stale), and never a step back."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState
from tests.helpers import request


class GatedSink:
    """Records what each progress call showed; the first call waits for `gate`. Like the
    Telegram sink, one call per job at a time: a delivery waits for an update on its way."""

    platform = "test"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.shown: list[tuple[str, int | None]] = []
        self.calls = 0
        self.delivered: list[Job] = []
        self.lock = asyncio.Lock()

    async def progress(self, job: Job) -> str | None:
        async with self.lock:
            self.calls += 1
            if self.calls == 1:
                await self.gate.wait()
            self.shown.append((job.state.value, job.queue_position))
        return None

    async def deliver(self, job: Job, files: object) -> None:
        async with self.lock:
            self.delivered.append(job)


@pytest.fixture
async def core(make_settings: Callable[..., Settings]) -> AsyncIterator[Core]:
    """A core whose tracker and notifier loops do not run: only `progress` is exercised."""
    async with open_core(
        make_settings(aa_base_url="http://127.0.0.1:9", progress_interval_s=0.05)
    ) as c:
        yield c


async def settled(core: Core, sink: GatedSink, count: int) -> None:
    async with asyncio.timeout(5):
        while len(sink.shown) < count or core.notifier._progress_tasks:
            await asyncio.sleep(0.01)


def at(job: Job, place: int | None, state: JobState = JobState.RECEIVED) -> Job:
    return dataclasses.replace(job, state=state, queue_position=place)


async def test_the_newest_update_replaces_those_waiting(core: Core) -> None:
    sink = GatedSink()
    core.notifier.register(sink)
    job = await core.service.submit(request(platform="test"))

    core.notifier.progress(at(job, 4))
    await asyncio.sleep(0)  # the first update is on its way, held by the sink
    for place in (3, 2, 1):
        core.notifier.progress(at(job, place))
    sink.gate.set()
    await settled(core, sink, 2)

    assert sink.shown == [("received", 4), ("received", 1)]


async def test_an_update_that_goes_back_is_dropped(core: Core) -> None:
    sink = GatedSink()
    core.notifier.register(sink)
    job = await core.service.submit(request(platform="test"))

    core.notifier.progress(at(job, 2))
    await asyncio.sleep(0)
    core.notifier.progress(at(job, None, JobState.SUBMITTING))
    core.notifier.progress(at(job, 1))  # a place computed before it was sent: stale
    sink.gate.set()
    await settled(core, sink, 2)
    core.notifier.progress(at(job, 1))
    core.notifier.progress(at(job, None, JobState.RUNNING))
    await settled(core, sink, 3)

    assert sink.shown == [("received", 2), ("submitting", None), ("running", None)]


async def test_a_result_does_not_wait_for_a_progress_update_stuck_on_its_way(
    core: Core,
) -> None:
    sink = GatedSink()  # its first update waits for ever, as behind a rate limit
    core.notifier.register(sink)
    job = await core.service.submit(request(platform="test"))
    core.notifier.progress(at(job, 2))
    await asyncio.sleep(0)
    core.notifier.progress(at(job, 1))

    job.state, job.delivery = JobState.FAILED, Delivery.PENDING
    job.error_message, job.next_delivery_at = "It broke.", core.clock.now()
    await core.store.save(job)
    async with asyncio.timeout(5):
        assert await core.notifier.run_once() == 1
        await core.notifier.drain()

    assert [j.id for j in sink.delivered] == [job.id]
    assert sink.shown == []  # the update on its way was called off; the next one dropped
    assert not core.notifier._progress_tasks


class BrokenSink(GatedSink):
    """A platform that refuses every progress update."""

    async def progress(self, job: Job) -> str | None:
        self.calls += 1
        raise ConnectionResetError("the chat platform hung up")


async def test_a_failed_update_is_one_info_line_and_its_traceback_at_debug(
    core: Core, log_records: pytest.LogCaptureFixture
) -> None:
    sink = BrokenSink()
    core.notifier.register(sink)
    job = await core.service.submit(request(platform="test"))
    core.notifier.progress(at(job, 1))
    async with asyncio.timeout(5):
        while sink.calls < 1 or core.notifier._progress_tasks:
            await asyncio.sleep(0.01)

    said = [r for r in log_records.records if r.name == "bot.notifier" and job.id in r.getMessage()]
    assert [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in said] == [
        ("INFO", f"job {job.id}: progress update not shown (ConnectionResetError)", False),
        ("DEBUG", f"job {job.id}: why the progress update failed", True),
    ]
    assert "the chat platform hung up" in log_records.text
