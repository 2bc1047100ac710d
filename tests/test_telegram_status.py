"""Status traffic on Telegram, planned around results: TelegramSink with the real
python-telegram-bot client and FloodControl against FakeTelegram, and a real SQLite store
as the row a status is checked against. A group's budget is a minute long here, so it does
not refill during a test: a status waits until the test frees its tokens (the results it
kept them for went out). Nothing asserts on time, only on what was sent."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from telegram.ext import ExtBot

from adapters.telegram import status as status_module
from adapters.telegram.flood import FloodControl
from adapters.telegram.sink import TelegramSink
from bot.config import Settings
from bot.main.wiring import build_catalog
from bot.models import Job, JobState, Kind, Origin, new_job_id
from bot.ports import ResultFile
from storage.sqlite import SqliteJobStore
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.helpers import jpeg_bytes
from tests.test_telegram import GROUP_ID, TOKEN

MINUTE = 60.0
QUEUED = "⏳ Queued on Nano Banana…"
SENDING = "⏳ Sending to Nano Banana…"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        server.group(GROUP_ID, "Art club")
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    async with SqliteJobStore(tmp_path / "jobs.db") as s:
        yield s


@dataclasses.dataclass
class Bed:
    fake: FakeTelegram
    store: SqliteJobStore
    limiter: FloodControl
    sink: TelegramSink

    async def job(self, **changes: object) -> Job:
        origin = Origin(
            platform="telegram",
            chat_id=str(GROUP_ID),
            user_id="42",
            user_name="Ann",
            message_id="1",
        )
        job = Job(
            id=new_job_id(), kind=Kind.IMAGE, model="nanobanana", prompt="a fox", origin=origin
        )
        job = dataclasses.replace(job, **changes)  # type: ignore[arg-type]
        await self.store.create(job)
        return job

    def status_calls(self) -> list[Call]:
        return [
            c
            for c in self.fake.calls
            if c.method in ("sendMessage", "editMessageText", "deleteMessage")
        ]

    def texts(self) -> list[str]:
        return [str(c.params.get("text")) for c in self.status_calls()]


@pytest.fixture
async def open_bed(
    fake: FakeTelegram, store: SqliteJobStore, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[[int], Bed]]:
    bots: list[ExtBot[None]] = []

    def opener(group_budget: int) -> Bed:
        limiter = FloodControl(
            overall_max_rate=0,
            group_max_rate=group_budget,
            group_time_period=MINUTE,
            edit_reserve=0,
        )
        bot: ExtBot[None] = ExtBot(fake.token, base_url=fake.api_base, rate_limiter=limiter)
        bots.append(bot)
        sink = TelegramSink(
            bot, build_catalog(make_settings()), upload_limit_mb=50, fresh=store.get
        )
        return Bed(fake, store, limiter, sink)

    yield opener
    for bot in bots:
        await bot.shutdown()


async def until_waiting(limiter: FloodControl, count: int = 1) -> None:
    async with asyncio.timeout(5):
        while limiter.waiting < count:
            await asyncio.sleep(0.01)


async def test_an_update_made_moot_while_waiting_is_never_sent(
    open_bed: Callable[[int], Bed],
) -> None:
    # 3 tokens, one kept for the job's result: the status line and one edit go, the next
    # edit waits. Meanwhile the job moves on: when budget frees, the newest state is shown.
    bed = open_bed(3)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=10)
    await bed.store.save(running)
    await bed.sink.progress(running)
    assert bed.texts() == [QUEUED, "🎨 Nano Banana ▰▱▱▱▱▱▱▱▱▱ 10%"]

    waiting = asyncio.create_task(bed.sink.progress(dataclasses.replace(running, progress=60)))
    await until_waiting(bed.limiter)
    later = dataclasses.replace(running, progress=70)
    await bed.store.save(later)  # the tracker saw 70% while the 60% edit waited
    newer = asyncio.create_task(bed.sink.progress(later))  # waits behind it: same job
    bed.limiter.expect_results(GROUP_ID, 0)  # tokens free up
    await asyncio.wait_for(asyncio.gather(waiting, newer), 5)

    assert bed.texts() == [QUEUED, "🎨 Nano Banana ▰▱▱▱▱▱▱▱▱▱ 10%", "🎨 Nano Banana ▰▰▰▰▰▰▰▱▱▱ 70%"]
    assert not any("60%" in t for t in bed.texts())


async def test_a_near_end_percentage_that_came_while_an_edit_waited_is_not_shown(
    open_bed: Callable[[int], Bed],
) -> None:
    bed = open_bed(3)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=10)
    await bed.sink.progress(running)
    waiting = asyncio.create_task(bed.sink.progress(dataclasses.replace(running, progress=60)))
    await until_waiting(bed.limiter)
    near = dataclasses.replace(running, progress=90)
    await bed.store.save(near)
    newer = asyncio.create_task(bed.sink.progress(near))
    bed.limiter.expect_results(GROUP_ID, 0)
    await asyncio.wait_for(asyncio.gather(waiting, newer), 5)
    assert bed.texts() == [QUEUED, "🎨 Nano Banana ▰▱▱▱▱▱▱▱▱▱ 10%"]


async def test_a_percentage_seen_long_before_its_turn_is_dropped(
    open_bed: Callable[[int], Bed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job may have finished while the edit waited: the next poll brings a fresh one."""
    monkeypatch.setattr(status_module, "PROGRESS_FRESH_S", 0.05)
    bed = open_bed(3)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=10)
    await bed.sink.progress(running)
    waiting = asyncio.create_task(bed.sink.progress(dataclasses.replace(running, progress=60)))
    await until_waiting(bed.limiter)
    await asyncio.sleep(0.2)  # longer than PROGRESS_FRESH_S: the 60 % is old news now
    bed.limiter.expect_results(GROUP_ID, 0)
    await asyncio.wait_for(waiting, 5)
    assert bed.texts() == [QUEUED, "🎨 Nano Banana ▰▱▱▱▱▱▱▱▱▱ 10%"]

    await bed.sink.progress(dataclasses.replace(running, progress=70))  # fresh: it goes
    assert bed.texts()[-1] == "🎨 Nano Banana ▰▰▰▰▰▰▰▱▱▱ 70%"


async def test_nothing_is_sent_for_a_job_that_ended_while_its_edit_waited(
    open_bed: Callable[[int], Bed],
) -> None:
    bed = open_bed(2)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)  # 2 tokens, 1 kept: the line goes, nothing more
    waiting = asyncio.create_task(
        bed.sink.progress(dataclasses.replace(job, state=JobState.RUNNING, progress=40))
    )
    await until_waiting(bed.limiter)
    await bed.store.save(dataclasses.replace(job, state=JobState.SUCCEEDED, progress=100))
    bed.limiter.expect_results(GROUP_ID, 0)
    await asyncio.wait_for(waiting, 5)
    assert bed.texts() == [QUEUED]


async def test_a_place_in_line_is_never_sent_after_its_job_was_submitted(
    open_bed: Callable[[int], Bed],
) -> None:
    # Ann's job waits in line; its place (1st) is computed just before it is sent, and the
    # edit saying so waits for the group's budget. By its turn the job was submitted: the
    # status says so, without the Cancel button.
    bed = open_bed(2)
    await bed.sink.bot.initialize()
    job = await bed.job(queue_position=2)
    await bed.sink.progress(job)
    [line] = bed.status_calls()
    assert line.params["text"].startswith("⏳ In line for Nano Banana: 2nd")
    waiting = asyncio.create_task(bed.sink.progress(dataclasses.replace(job, queue_position=1)))
    await until_waiting(bed.limiter)
    await bed.store.save(dataclasses.replace(job, state=JobState.SUBMITTING))
    bed.limiter.expect_results(GROUP_ID, 0)
    await asyncio.wait_for(waiting, 5)

    edit = bed.status_calls()[-1]
    assert edit.method == "editMessageText" and edit.params["text"] == SENDING
    assert "reply_markup" not in edit.params
    assert not any("1st" in t for t in bed.texts())


async def test_a_result_does_not_wait_for_its_jobs_status_update(
    open_bed: Callable[[int], Bed], tmp_path: Path
) -> None:
    # The group's budget has one token left, kept for the job's result. A progress edit
    # waits for budget while holding the job's status; the result comes: the edit gives
    # up, the photo takes the token, and the status line's delete waits in the background.
    bed = open_bed(2)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)
    [line] = bed.status_calls()
    waiting = asyncio.create_task(
        bed.sink.progress(dataclasses.replace(job, state=JobState.RUNNING, progress=50))
    )
    await until_waiting(bed.limiter)

    photo = tmp_path / "fox.jpg"
    photo.write_bytes(jpeg_bytes())
    done = dataclasses.replace(
        job, state=JobState.SUCCEEDED, progress=100, result_urls=["https://cdn.example/fox.jpg"]
    )
    files = [ResultFile(done.result_urls[0], photo, photo.stat().st_size, "image/jpeg", "fox.jpg")]
    await asyncio.wait_for(bed.sink.deliver(done, files), 5)
    await asyncio.wait_for(waiting, 5)

    assert [c.method for c in bed.fake.calls if c.method != "getMe"] == ["sendMessage", "sendPhoto"]
    assert bed.limiter.waiting == 1  # the delete of the status line, for the next minute
    await bed.sink.aclose()
    assert (GROUP_ID, line.result["message_id"]) in bed.fake.messages


async def test_a_percentage_near_the_end_is_not_shown(open_bed: Callable[[int], Bed]) -> None:
    """At 75 % and over the result follows within seconds: an edit then would mostly reach
    the chat after the gateway finished, so the status keeps its last percentage."""
    bed = open_bed(20)
    await bed.sink.bot.initialize()
    job = await bed.job()
    await bed.sink.progress(job)
    running = dataclasses.replace(job, state=JobState.RUNNING, progress=10)
    await bed.store.save(running)
    await bed.sink.progress(running)
    near = dataclasses.replace(running, progress=80)
    await bed.store.save(near)
    await bed.sink.progress(near)
    assert bed.texts() == [QUEUED, "🎨 Nano Banana ▰▱▱▱▱▱▱▱▱▱ 10%"]
