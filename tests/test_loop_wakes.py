"""The tracker's and the notifier's loops sleep until the next thing is due, but never past
work that becomes due while they sleep: a poll saved as due sooner than the tracker's wake
(a run close to its end), a delivery waiting for a slot that frees. Each test makes the
idle pace an hour, so a loop that waits for it never gets there (the guard fails)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import bot.notifier
import bot.tracker
from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState, TaskUpdate
from bot.polling import FixedPolicy
from bot.ports import ResultFile
from sandbox import SandboxGateway
from tests.conftest import API_KEY
from tests.helpers import RecordingSink, request

HOUR = 3600.0
GUARD_S = 30.0  # only for a broken loop: the awaited thing never comes


async def test_a_poll_saved_as_due_sooner_than_the_sleeping_tracker_wakes_it(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.tracker, "TRACKER_IDLE_WAKE_S", HOUR)
    async with SandboxGateway(api_key=API_KEY, late_url_polls=0) as gw:
        settings = make_settings(aa_base_url=gw.base_url)
        # The first poll is due as the submit's answer is saved. While the submit is in
        # flight the job's next poll is its lease (minutes away): the loop sleeps till then.
        async with open_core(settings, policy=FixedPolicy(first_s=0.0, interval_s=HOUR)) as core:
            core.notifier.register(RecordingSink())
            gw.script_next(duration=HOUR)
            hold_submits_until_the_tracker_sleeps(core)
            runner = asyncio.create_task(core.tracker.run())
            try:
                job = await core.service.submit(request())
                async with asyncio.timeout(GUARD_S):
                    while True:
                        stored = await core.store.get(job.id)
                        assert stored is not None
                        task = gw.tasks.get(stored.upstream_task_id or "")
                        if task is not None and task.polls >= 1:
                            break
                        await asyncio.sleep(0.01)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


def hold_submits_until_the_tracker_sleeps(core: Core) -> asyncio.Event:
    """Each submit waits until the tracker's loop has read the store's next due time (it
    sleeps right after) and has not claimed since, so its answer is saved while it sleeps."""
    asleep = asyncio.Event()
    next_due, claim = core.store.next_due, core.store.claim_due_polls
    submit = core.gateways["aa"].submit

    async def looked(*args: Any, **kwargs: Any) -> float | None:
        due = await next_due(*args, **kwargs)
        asleep.set()
        return due

    async def claimed(*args: Any, **kwargs: Any) -> list[Job]:
        asleep.clear()
        return await claim(*args, **kwargs)

    async def held(*args: Any, **kwargs: Any) -> TaskUpdate:
        await asleep.wait()
        return await submit(*args, **kwargs)

    setattr(core.store, "next_due", looked)  # noqa: B010
    setattr(core.store, "claim_due_polls", claimed)  # noqa: B010
    setattr(core.gateways["aa"], "submit", held)  # noqa: B010
    return asleep


async def test_work_due_already_that_the_tracker_cannot_take_does_not_hide_the_next_poll(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery overdue (the notifier's, which is not running here) and a job waiting
    for a slot in its chat are due already; the tracker claims neither. Its next poll, a
    moment away, is still made on time."""
    monkeypatch.setattr(bot.tracker, "TRACKER_IDLE_WAKE_S", HOUR)
    async with SandboxGateway(api_key=API_KEY, late_url_polls=0) as gw:
        settings = make_settings(aa_base_url=gw.base_url, chat_concurrent_jobs=1)
        async with open_core(settings, policy=FixedPolicy(first_s=0.3, interval_s=HOUR)) as core:
            core.notifier.register(RecordingSink())
            overdue = await core.service.submit(request("delivered by nobody", platform="other"))
            overdue.state, overdue.delivery = JobState.FAILED, Delivery.PENDING
            overdue.next_delivery_at = core.clock.now() - 60.0
            await core.store.save(overdue)
            gw.script_next(duration=HOUR)
            job = await core.service.submit(request("polled"))
            waiting = await core.service.submit(request("in line behind it"))
            runner = asyncio.create_task(core.tracker.run())
            try:
                async with asyncio.timeout(GUARD_S):
                    while True:
                        stored = await core.store.get(job.id)
                        assert stored is not None
                        task = gw.tasks.get(stored.upstream_task_id or "")
                        if task is not None and task.polls >= 1:
                            break
                        await asyncio.sleep(0.01)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            still = await core.store.get(waiting.id)
            assert still is not None and still.state is JobState.RECEIVED  # its turn: later


class HeldSink(RecordingSink):
    """Holds the first delivery until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        self.started.set()
        if not self.delivered:
            await self.release.wait()
        await super().deliver(job, files)


async def test_a_delivery_waiting_for_a_slot_starts_when_one_frees(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.notifier, "TRACKER_IDLE_WAKE_S", HOUR)
    async with open_core(make_settings()) as core:
        core.notifier.concurrency = 1
        sink = HeldSink()
        core.notifier.register(sink)
        ids = []
        for prompt in ("first", "second"):
            job = await core.service.submit(request(prompt))
            job.state, job.delivery = JobState.FAILED, Delivery.PENDING
            job.next_delivery_at = core.clock.now()
            await core.store.save(job)
            ids.append(job.id)
        runner = asyncio.create_task(core.notifier.run())
        try:
            async with asyncio.timeout(GUARD_S):
                await sink.started.wait()  # one slot: the other waits
                sink.release.set()
                while len(sink.delivered) < 2:
                    await asyncio.sleep(0.01)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        assert sorted(j.id for j, _ in sink.delivered) == sorted(ids)
