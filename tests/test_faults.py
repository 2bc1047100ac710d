"""Gateway faults through real HTTP on loopback, with a clock the test moves: the tracker's
error handling, the submit-once rule and the words the user gets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.app import Core
from bot.config import Settings
from bot.main.wiring import open_core
from bot.messages import failure_text
from bot.models import Delivery, Job, JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import API_KEY, FakeClock
from tests.helpers import RecordingSink, request

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gw(clock: FakeClock) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(api_key=API_KEY, clock=clock.now, late_url_polls=0) as g:
        yield g


@pytest.fixture
async def core(
    make_settings: Callable[..., Settings], gw: SandboxGateway, clock: FakeClock
) -> AsyncIterator[Core]:
    settings = make_settings(
        aa_base_url=gw.base_url, poll_first_delay_s=1.0, poll_interval_s=5.0, gateway_timeout_s=0.5
    )
    async with open_core(settings, clock=clock) as c:
        c.notifier.register(RecordingSink())
        yield c


async def step(core: Core, clock: FakeClock, seconds: float = 0.0) -> Job | None:
    """Move time, then let the tracker and the notifier do what is due, to the end."""
    clock.advance(seconds)
    await core.tracker.run_once()
    await core.tracker.drain()
    await core.notifier.run_once()
    await core.notifier.drain()
    return None


async def reload(core: Core, job: Job) -> Job:
    fresh = await core.store.get(job.id)
    assert fresh is not None
    return fresh


async def run_to_end(core: Core, clock: FakeClock, job: Job, limit: int = 60) -> Job:
    for _ in range(limit):
        await step(core, clock, 5.0)
        job = await reload(core, job)
        if job.delivery is Delivery.DELIVERED:
            return job
    raise AssertionError(f"job never finished: {job}")


@pytest.mark.parametrize(
    ("fault", "expected_code_in_log"),
    [
        (dict(status=500), "HTTP 500"),
        (
            dict(status=502, body=HTML_502, content_type="text/html"),
            "an HTML error page (502 Bad Gateway)",
        ),
        (dict(status=200, body='{"task_id": ', content_type="application/json"), "not JSON"),
        (dict(status=401), "HTTP 401"),
        (dict(status=503, delay=2.0), "no answer within"),
    ],
    ids=["5xx", "html-502", "malformed-json", "401", "timeout"],
)
async def test_poll_faults_back_off_and_the_job_still_succeeds(
    core: Core,
    gw: SandboxGateway,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, object],
    expected_code_in_log: str,
) -> None:
    job = await core.service.submit(request(kind=Kind.VIDEO, model="veo_fast"))
    await step(core, clock)  # submitted
    gw.inject_fault("GET", "/v1/tasks/", count=2, **fault)  # type: ignore[arg-type]
    await step(core, clock, 1.0)
    job = await reload(core, job)
    assert job.error_streak == 1
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert expected_code_in_log in caplog.text
    done = await run_to_end(core, clock, job)
    assert done.state is JobState.SUCCEEDED
    assert len(gw.create_calls()) == 1
    assert API_KEY not in caplog.text


async def test_poll_429_waits_exactly_retry_after(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    job = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
    await step(core, clock)
    gw.inject_fault("GET", "/v1/tasks/", status=429, headers={"Retry-After": "17"})
    await step(core, clock, 1.0)
    job = await reload(core, job)
    assert job.next_poll_at == pytest.approx(clock.now() + 17)

    def polls() -> int:
        return len([r for r in gw.requests if r.path.startswith("/v1/tasks/")])

    before = polls()
    await step(core, clock, 16.0)
    assert polls() == before  # not before its time
    await step(core, clock, 1.0)
    assert polls() == before + 1


async def test_submit_429_is_retried_after_its_hint_and_creates_one_task(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    gw.inject_fault("POST", "/v1/images/generations", status=429, headers={"Retry-After": "3"})
    job = await core.service.submit(request(model="nanobanana"))
    await step(core, clock)
    job = await reload(core, job)
    assert job.state is JobState.RECEIVED  # nothing was created: safe to send again
    assert job.next_poll_at == pytest.approx(clock.now() + 3)
    done = await run_to_end(core, clock, job)
    assert done.state is JobState.SUCCEEDED
    assert len(gw.create_calls()) == 2
    assert len(gw.tasks) == 1


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (
            dict(status=401),
            "auth",
            "The image service is misconfigured right now, so nothing was made. You were not charged. Please tell the bot's operator.",
        ),
        (
            dict(status=402, body={"error": {"message": "Insufficient balance"}}),
            "quota",
            "The image service is out of credit right now. You were not charged. Please try again later.",
        ),
        (
            dict(status=400, body={"error": {"message": "prompt violates the content policy"}}),
            "rejected",
            "Nano Banana refused this image: prompt violates the content policy. You were not charged. Try rewording the prompt or another model.",
        ),
        (
            dict(status=502, body=HTML_502, content_type="text/html"),
            "unavailable",
            "Nano Banana had a problem starting this image: an HTML error page (502 Bad Gateway). You were not charged. Please try again in a minute.",
        ),
    ],
    ids=["401", "402", "400", "html-502"],
)
async def test_submit_refusals_fail_the_job_with_words(
    core: Core,
    gw: SandboxGateway,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, object],
    code: str,
    words: str,
) -> None:
    gw.inject_fault("POST", "/v1/images/generations", **fault)  # type: ignore[arg-type]
    job = await core.service.submit(request(model="nanobanana"))
    await step(core, clock)
    job = await reload(core, job)
    assert job.state is JobState.FAILED
    assert job.error_code == code
    assert job.delivery is Delivery.DELIVERED
    assert failure_text(job, core.catalog) == "❌ " + words
    assert len(gw.create_calls()) == 1
    if code == "auth":
        assert "refused our API key" in caplog.text  # the operator is told in the log


@pytest.mark.parametrize(
    "fault",
    [
        dict(status=200, delay=2.0),
        dict(status=200, body="<html>oops</html>", content_type="text/html"),
    ],
    ids=["response-never-arrives", "garbled-2xx"],
)
async def test_submit_with_unknown_outcome_is_interrupted_and_never_resent(
    core: Core,
    gw: SandboxGateway,
    clock: FakeClock,
    make_settings: Callable[..., Settings],
    fault: dict[str, object],
) -> None:
    gw.inject_fault("POST", "/api/v1/aa/openapi/sora/tasks", after_processing=True, **fault)  # type: ignore[arg-type]
    job = await core.service.submit(request(kind=Kind.VIDEO, model="sora_studio"))
    await step(core, clock)
    job = await reload(core, job)
    assert job.state is JobState.INTERRUPTED
    assert job.delivery is Delivery.DELIVERED
    assert "may or may not have been charged" in failure_text(job, core.catalog)
    for _ in range(5):
        await step(core, clock, 60)
    # A new process on the same database does not send it again either.
    async with open_core(core.settings, clock=clock) as again:
        await again.tracker.run_once()
        await again.tracker.drain()
    assert len(gw.create_calls()) == 1
    assert len(gw.tasks) == 1  # the gateway did create it: we must not have made a second


async def test_deadline_times_out_and_says_so(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    gw.script_next(duration=10_000)
    job = await core.service.submit(request(model="nanobanana"))
    await step(core, clock)
    for _ in range(130):
        await step(core, clock, 5.0)
    job = await reload(core, job)
    assert job.state is JobState.TIMED_OUT
    assert failure_text(job, core.catalog) == (
        "⌛ Nano Banana did not finish within 10 minutes, so I stopped waiting. "
        "It may still be charged if it finishes late. Try again, or a faster model."
    )


async def test_a_job_that_ended_after_its_deadline_is_still_picked_up(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    """After a long outage the first poll past the deadline sees the result: it counts."""
    job = await core.service.submit(request(model="nanobanana"))
    await step(core, clock)
    clock.advance(3600)  # the service was down for an hour; the task finished meanwhile
    await step(core, clock)
    job = await reload(core, job)
    assert job.state is JobState.SUCCEEDED


async def test_task_lost_after_repeated_404(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    job = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
    await step(core, clock)
    gw.inject_fault("GET", "/v1/tasks/", status=404, count=10)
    for _ in range(6):
        await step(core, clock, 130)
    job = await reload(core, job)
    assert job.state is JobState.FAILED
    assert job.error_code == "task_lost"
    assert "lost track of this video" in failure_text(job, core.catalog)


async def test_one_404_after_connection_errors_is_not_a_lost_task(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    job = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
    await step(core, clock)  # submitted
    port = int(gw.base_url.rsplit(":", 1)[1])
    await gw.stop()  # the gateway is down for a while: two polls cannot connect
    await step(core, clock, 15)
    await step(core, clock, 15)
    assert (await reload(core, job)).error_streak == 2
    gw.port = port
    await gw.start()  # back, and its first answer is a 404
    gw.inject_fault("GET", "/v1/tasks/", status=404)
    await step(core, clock, 15)
    job = await reload(core, job)  # what a restart would read
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert (job.error_streak, job.not_found_streak) == (3, 1)
    done = await run_to_end(core, clock, job)
    assert done.state is JobState.SUCCEEDED
    assert done.not_found_streak == 0  # a good poll ended the streak


async def test_404_streak_counts_only_404s_and_survives_a_restart(
    core: Core, gw: SandboxGateway, clock: FakeClock
) -> None:
    job = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
    await step(core, clock)
    gw.inject_fault("GET", "/v1/tasks/", status=404, count=2)
    await step(core, clock, 15)
    await step(core, clock, 15)
    gw.inject_fault("GET", "/v1/tasks/", status=500)  # neither grows nor ends the 404 streak
    await step(core, clock, 15)
    assert (await reload(core, job)).not_found_streak == 2
    async with open_core(core.settings, clock=clock) as second:  # a new process reads the row
        second.notifier.register(RecordingSink())
        assert (await reload(second, job)).not_found_streak == 2
        gw.inject_fault("GET", "/v1/tasks/", status=404)
        await step(second, clock, 15)
        job = await reload(second, job)
    assert job.state is JobState.FAILED and job.error_code == "task_lost"
