"""The crash suite's judge (tests/crashes.py) on hand-made histories: it passes a request
answered once, and names each broken invariant, so a crash test can fail."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.main.wiring import build_catalog, open_core
from bot.messages import confirm_text, failure_text, progress_text
from bot.models import Job, JobState, Kind
from sandbox import SandboxGateway
from storage.sqlite import SqliteJobStore
from tests.conftest import API_KEY
from tests.crashes import TOKEN, Asked, ask, judge, unfinished
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import origin, request

CHAT_ID = -1002000000002
PROMPT = "a lighthouse at dawn, judged"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as f:
        yield f


async def bot(fake: FakeTelegram, method: str, **params: Any) -> Any:
    """A Bot API call as the bot would make it; its result."""
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{fake.api_base}{fake.token}/{method}", json=params)
    body = answer.json()
    assert body["ok"], body
    return body["result"]


async def create(sandbox: SandboxGateway) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{sandbox.base_url}/v1/images/generations",
            headers={"X-API-Key": API_KEY},
            json={"model": "nanobanana", "prompt": PROMPT, "async": True},
        )
    answer.raise_for_status()


async def status_line(fake: FakeTelegram, asked: Asked) -> int:
    reply = {"message_id": asked.message_id}
    sent = await bot(
        fake,
        "sendMessage",
        chat_id=CHAT_ID,
        text="⏳ Queued on Nano Banana…",
        reply_parameters=reply,
    )
    return int(sent["message_id"])


async def test_a_request_answered_once_passes(
    fake: FakeTelegram, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    asked = ask(fake, CHAT_ID, "/imagine", PROMPT)
    status = await status_line(fake, asked)
    await create(sandbox)
    reply = {"message_id": asked.message_id}
    photo = await bot(
        fake, "sendPhoto", chat_id=CHAT_ID, photo="https://x.test/r.png", reply_parameters=reply
    )
    await bot(
        fake,
        "sendDocument",
        chat_id=CHAT_ID,
        document="https://x.test/r.png",
        reply_parameters={"message_id": photo["message_id"]},
    )
    await bot(fake, "deleteMessage", chat_id=CHAT_ID, message_id=status)
    async with SqliteJobStore(tmp_path / "jobs.db") as store:
        assert await judge(fake, sandbox, store, [asked], crashes=0) == []


async def test_a_status_edited_into_its_final_answer_passes(
    fake: FakeTelegram, sandbox: SandboxGateway, tmp_path: Path
) -> None:
    asked = ask(fake, CHAT_ID, "/imagine", PROMPT)
    status = await status_line(fake, asked)
    await bot(
        fake,
        "editMessageText",
        chat_id=CHAT_ID,
        message_id=status,
        text="❌ Nano Banana could not make this image.",
    )
    async with SqliteJobStore(tmp_path / "jobs.db") as store:
        assert await judge(fake, sandbox, store, [asked], crashes=0) == []


async def test_each_broken_invariant_is_named(
    fake: FakeTelegram,
    sandbox: SandboxGateway,
    make_settings: Callable[..., Settings],
) -> None:
    asked = ask(fake, CHAT_ID, "/imagine", PROMPT)
    await status_line(fake, asked)
    await status_line(fake, asked)  # a second status line, and neither is removed
    await create(sandbox)
    await create(sandbox)
    async with open_core(make_settings(aa_base_url=sandbox.base_url)) as core:
        job = await core.service.submit(request(PROMPT))  # recorded, never followed
        problems = await judge(fake, sandbox, core.store, [asked], crashes=0)
    assert len(problems) == 5, problems
    lost, twice, duplicate, orphans, left = problems
    assert lost.startswith("request lost: '/imagine a lighthouse at dawn, judged' (message 1)")
    assert twice == f"task created twice: the gateway saw 2 create calls for {PROMPT!r}"
    assert duplicate.startswith("1 duplicate messages after 0 crash(es)")
    assert "{'status line': 2}" in duplicate
    assert orphans.startswith("orphan status: #2 text (reply to 1): '⏳ Queued on Nano Banana…'")
    assert "#3 text" in orphans
    assert left == (
        f"job left unfinished: {job.id} (nanobanana, {PROMPT!r}) is received, delivery none"
    )
    # One duplicate is what one crash may leave.
    async with open_core(make_settings(aa_base_url=sandbox.base_url)) as core:
        problems = await judge(fake, sandbox, core.store, [asked], crashes=1)
    assert not [p for p in problems if "duplicate" in p]


def _job(state: JobState, **fields: Any) -> Job:
    return Job(
        id="j1",
        kind=Kind.IMAGE,
        model="nanobanana",
        prompt=PROMPT,
        origin=origin(),
        state=state,
        created_at=0.0,
        updated_at=0.0,
        **fields,
    )


UNFINISHED_JOBS = [
    _job(JobState.RECEIVED),
    _job(JobState.RECEIVED, queue_position=2),
    _job(JobState.SUBMITTING),
    _job(JobState.QUEUED),
    _job(JobState.RUNNING, progress=40),
    _job(JobState.SUCCEEDED),  # "finished. Sending the result…"
]
ENDED_JOBS = [
    _job(JobState.FAILED, error_code="rejected", error_message="blocked"),
    _job(JobState.REFUNDED, refunded_usd=0.04),
    _job(JobState.TIMED_OUT),
    _job(JobState.INTERRUPTED),
    _job(JobState.REJECTED, error_message="That prompt is empty."),
]


@pytest.mark.parametrize("job", UNFINISHED_JOBS, ids=lambda j: f"{j.state.value}")
def test_every_status_line_of_an_unfinished_job_counts_as_unfinished(job: Job) -> None:
    catalog = build_catalog(Settings(_env_file=None))  # type: ignore[call-arg]
    assert unfinished(progress_text(job, catalog))
    held = dataclasses.replace(job, state=JobState.RECEIVED, hold="confirm")
    assert unfinished(confirm_text(held, catalog, 300))


@pytest.mark.parametrize("job", ENDED_JOBS, ids=lambda j: f"{j.state.value}")
def test_a_final_answer_does_not(job: Job) -> None:
    catalog = build_catalog(Settings(_env_file=None))  # type: ignore[call-arg]
    assert not unfinished(progress_text(job, catalog))
    assert not unfinished(failure_text(job, catalog))
