"""The adaptive polling policy, with a clock the test moves: when it polls, when it falls back
to the fixed schedule, what it learns; and through the real tracker against the sandbox."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.catalog import ModelSpec, default_specs
from bot.config import Settings
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState, Kind, Origin
from bot.poll_tuning import (
    BLIND_GAP,
    LATE_URL_GAP_S,
    LATE_URL_PATIENCE_S,
    MIN_GAP_S,
    SPREAD,
    SPREAD_MIN,
)
from bot.polling import FixedPolicy, ProgressAwarePolicy, make_policy
from sandbox import SandboxGateway
from storage.sqlite import SqliteJobStore
from tests.conftest import API_KEY, FakeClock
from tests.helpers import RecordingSink, request

SPECS = {s.code: s for s in default_specs()}
VEO = SPECS["veo"]  # typical 120 s
BANANA = SPECS["nanobanana"]  # typical 20 s
FIXED_INTERVAL = 5.0


def new_job(spec: ModelSpec, job_id: str = "j1") -> Job:
    return Job(
        id=job_id,
        kind=spec.kind,
        model=spec.code,
        prompt="a fox",
        origin=Origin("test", "c1", "u1"),
        state=JobState.QUEUED,
        submitted_at=0.0,
    )


Curve = Callable[[float], tuple[JobState, int]]


def linear(duration: float) -> Curve:
    """The sandbox's shape: queued for the first 10 %, then a straight line."""

    def at(t: float) -> tuple[JobState, int]:
        if t < 0.1 * duration:
            return JobState.QUEUED, 0
        return JobState.RUNNING, min(int(100 * t / duration), 99)

    return at


def schedule(
    policy: ProgressAwarePolicy | FixedPolicy,
    spec: ModelSpec,
    curve: Curve,
    duration: float,
    *,
    job_id: str = "j1",
) -> list[tuple[float, float]]:
    """(time, gap to the next poll) of every poll of one job until the poll that sees it
    done (its gap is 0); the job ends at `duration`."""
    job = new_job(spec, job_id)
    t = policy.first_delay(job, spec)
    polls: list[tuple[float, float]] = []
    while t < duration:
        job.state, job.progress = curve(t)
        gap = policy.next_delay(job, spec, t)
        polls.append((t, gap))
        t += gap
        assert len(polls) < 1000, "never got there"
    polls.append((t, 0.0))
    job.state, job.progress, job.finished_at = JobState.SUCCEEDED, 100, t
    policy.job_ended(job)
    return polls


# -- when it polls ------------------------------------------------------------------------


def test_nothing_between_the_early_poll_and_the_earliest_plausible_end() -> None:
    policy = ProgressAwarePolicy()
    polls = schedule(policy, VEO, linear(120.0), 120.0)
    first, *rest = [t for t, _ in polls]
    assert first <= 9.0  # the early look, for tasks that fail at once
    earliest = (1 - SPREAD) * VEO.typical_s
    assert all(t >= earliest for t in rest), polls


def test_a_queued_job_is_left_alone_until_it_could_be_done() -> None:
    policy = ProgressAwarePolicy()
    job = new_job(VEO)
    first = policy.first_delay(job, VEO)
    earliest = (1 - SPREAD) * VEO.typical_s
    assert policy.next_delay(job, VEO, first) == pytest.approx(earliest - first)
    # Still queued after that (a backlog upstream): not before it could have run a while.
    assert policy.next_delay(job, VEO, earliest) >= 20.0


def test_a_run_far_longer_than_typical_is_followed_at_the_cap_not_hammered() -> None:
    policy = ProgressAwarePolicy(max_gap_s=60.0)
    polls = schedule(policy, VEO, linear(1800.0), 1800.0)  # 15 x the typical run
    assert len(polls) <= 45
    assert polls[-1][0] - 1800.0 <= 3.0


def test_polls_closer_as_the_predicted_end_approaches_and_notices_it_quickly() -> None:
    policy = ProgressAwarePolicy()
    polls = schedule(policy, VEO, linear(120.0), 120.0)
    gaps = [g for _, g in polls[1:-1]]  # from the first reading with progress to the end
    assert gaps == sorted(gaps, reverse=True), polls
    assert gaps[0] >= 20.0
    assert polls[-2][0] >= 115.0  # the last look before the end is close to it
    assert polls[-1][0] - 120.0 <= 2.5  # and the end is noticed within a close gap
    assert len(polls) <= 8  # fixed 5 s takes 24


@pytest.mark.parametrize(
    ("spec", "durations", "max_polls", "max_delay"),
    [(VEO, (80.0, 120.0, 160.0), 8, 3.0), (BANANA, (14.0, 20.0, 26.0), 5, 2.0)],
    ids=["video", "image"],
)
def test_runs_shorter_and_longer_than_typical_are_noticed_in_time(
    spec: ModelSpec, durations: tuple[float, ...], max_polls: int, max_delay: float
) -> None:
    for duration in durations:
        polls = schedule(ProgressAwarePolicy(), spec, linear(duration), duration)
        assert polls[-1][0] - duration <= max_delay, (duration, polls)
        assert len(polls) <= max_polls, (duration, polls)


def test_a_task_that_stalls_is_followed_until_it_moves_on() -> None:
    def stalls(t: float) -> tuple[JobState, int]:  # 30 s at 50 %, ends at 150 s
        if t < 12:
            return JobState.QUEUED, 0
        return JobState.RUNNING, int(100 * (t if t < 60 else max(60, t - 30)) / 120)

    polls = schedule(ProgressAwarePolicy(), VEO, stalls, 150.0)
    assert polls[-1][0] - 150.0 <= 3.0, polls
    assert len(polls) <= 12


# -- falling back to the fixed schedule -------------------------------------------------------


def test_running_without_a_percentage_polls_like_fixed_once_it_could_be_done() -> None:
    policy = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    job = new_job(VEO)
    job.state, job.progress = JobState.RUNNING, 0
    earliest = (1 - SPREAD) * VEO.typical_s
    assert policy.next_delay(job, VEO, 7.0) == pytest.approx(earliest - 7.0)
    for t in (earliest, earliest + 5, 200.0, 2000.0):
        assert policy.next_delay(job, VEO, t) == FIXED_INTERVAL


def test_progress_going_backwards_polls_like_fixed_then_recovers() -> None:
    policy = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    job = new_job(VEO)
    job.state = JobState.RUNNING
    job.progress = 50
    policy.next_delay(job, VEO, 60.0)
    job.progress = 20
    assert policy.next_delay(job, VEO, 70.0) == FIXED_INTERVAL
    job.progress = 40
    assert policy.next_delay(job, VEO, 75.0) != FIXED_INTERVAL  # moving forward again


def test_stuck_at_100_without_a_url_polls_closely_then_like_fixed() -> None:
    policy = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    job = new_job(VEO)
    job.state, job.progress = JobState.RUNNING, 100
    t = 118.0
    gaps = []
    while t < 118.0 + LATE_URL_PATIENCE_S + 20:
        gap = policy.next_delay(job, VEO, t)
        gaps.append(gap)
        t += gap
    assert gaps[0] == LATE_URL_GAP_S  # the link usually comes within seconds
    assert gaps.count(LATE_URL_GAP_S) == int(LATE_URL_PATIENCE_S / LATE_URL_GAP_S)
    assert gaps[-1] == FIXED_INTERVAL


def test_stuck_near_the_end_for_long_polls_like_fixed() -> None:
    policy = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    job = new_job(VEO)
    job.state = JobState.RUNNING
    for t, p in ((60.0, 50), (90.0, 75), (110.0, 92)):
        job.progress = p
        policy.next_delay(job, VEO, t)
    gap = policy.next_delay(job, VEO, 300.0)  # still 92 % three minutes later
    assert gap == FIXED_INTERVAL


# -- the cap, and what it keeps --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_every_gap_is_within_bounds_whatever_the_gateway_says(seed: int) -> None:
    rng = random.Random(seed)
    cap = 20.0
    policy = ProgressAwarePolicy(max_gap_s=cap)
    spec = SPECS["sora_studio"]  # typical 180 s: far longer than the cap
    job = new_job(spec, f"j{seed}")
    assert MIN_GAP_S <= policy.first_delay(job, spec) <= cap
    t = 0.0
    for _ in range(300):
        job.state = rng.choice([JobState.QUEUED, JobState.RUNNING, JobState.RUNNING])
        job.progress = rng.choice([0, 100, rng.randint(0, 100), min(job.progress + 3, 100)])
        gap = policy.next_delay(job, spec, t)
        assert MIN_GAP_S <= gap <= cap, (t, job.state, job.progress, gap)
        t += gap


def test_per_job_memory_is_dropped_when_a_job_ends_and_works_without_it() -> None:
    policy = ProgressAwarePolicy()
    job = new_job(VEO)
    job.state, job.progress = JobState.RUNNING, 40
    policy.next_delay(job, VEO, 50.0)
    assert policy.tracked == 1
    job.state, job.finished_at = JobState.FAILED, 55.0
    policy.job_ended(job)
    assert policy.tracked == 0
    # After a restart there is no memory at all: the percentage and the time since submit
    # still place the end (50 % after 60 s: about 120 s).
    fresh = ProgressAwarePolicy()
    job = new_job(VEO, "j2")
    job.state, job.progress = JobState.RUNNING, 50
    gap = fresh.next_delay(job, VEO, 60.0)
    assert 20.0 <= gap <= 60.0


# -- learning --------------------------------------------------------------------------------


def test_finished_jobs_teach_the_typical_duration() -> None:
    policy = ProgressAwarePolicy()
    job = new_job(VEO)
    before = policy.next_delay(job, VEO, 7.0)  # queued: waits for the earliest plausible end
    for i in range(10):
        done = new_job(VEO, f"d{i}")
        done.state, done.finished_at = JobState.SUCCEEDED, 40.0 + i  # veo runs ~45 s here
        policy.job_ended(done)
    assert policy.typical(job, VEO)[0] == pytest.approx(44.5)
    after = policy.next_delay(job, VEO, 7.0)
    # Ten runs within 40-49 s: the typical run is their median, its spread is narrow; the
    # next look comes by the earliest plausible end of such a run, not of a 2-minute one.
    assert 7.0 + after <= (1 - SPREAD_MIN) * 44.5
    assert after < before - 20


def test_the_quickest_runs_of_a_burst_do_not_teach_a_short_typical_run() -> None:
    """Twenty images asked at once: the first five end within 10-12 s while fifteen are
    still running past that. Their median is no typical run yet; once most have ended,
    the finished ones tell it."""
    policy = ProgressAwarePolicy()
    jobs = [new_job(BANANA, f"b{i}") for i in range(20)]
    for job in jobs:
        job.state, job.progress = JobState.RUNNING, 40
        policy.next_delay(job, BANANA, 9.0)
    for i, job in enumerate(jobs[:5]):
        job.state, job.finished_at = JobState.SUCCEEDED, 10.0 + i / 2
        policy.job_ended(job)
    running = jobs[5]
    running.progress = 60
    policy.next_delay(running, BANANA, 13.0)
    assert policy.typical(running, BANANA) == (BANANA.typical_s, SPREAD)  # not 11 s

    for i, job in enumerate(jobs[5:]):
        job.state, job.finished_at = JobState.SUCCEEDED, 18.0 + i / 5
        policy.job_ended(job)
    later = new_job(BANANA, "next")
    later.submitted_at, later.state, later.progress = 30.0, JobState.RUNNING, 50
    policy.next_delay(later, BANANA, 40.0)
    assert policy.typical(later, BANANA)[0] == pytest.approx(19.1, abs=0.5)


async def test_the_store_remembers_durations_and_the_policy_reads_them(tmp_path: Path) -> None:
    async with SqliteJobStore(tmp_path / "jobs.db") as store:
        for i, (model, seconds, state) in enumerate(
            [("veo", 50.0, JobState.SUCCEEDED)] * 6
            + [("veo", 500.0, JobState.FAILED), ("nanobanana", 12.0, JobState.SUCCEEDED)]
        ):
            job = new_job(SPECS[model], f"job{i}")
            job.created_at = job.submitted_at = 1000.0 + i
            job.state, job.finished_at = state, 1000.0 + i + seconds
            await store.create(job)
        found = await store.recent_durations(0.0, 5)
        assert found == {"veo": [50.0] * 5, "nanobanana": [12.0]}
        assert await store.recent_durations(2000.0, 5) == {}

        policy = ProgressAwarePolicy()
        await policy.refresh(store, 3000.0)
        assert policy.typical(new_job(VEO), VEO)[0] == pytest.approx(50.0)
        assert policy.typical(new_job(BANANA), BANANA)[0] == BANANA.typical_s  # one is not enough


def test_make_policy_builds_each_by_name() -> None:
    assert make_policy("fixed", first_s=1, interval_s=2).name == "fixed"
    assert make_policy("adaptive").name == "adaptive"
    with pytest.raises(ValueError, match="adaptive"):
        make_policy("sometimes")


# -- through the real tracker, against the sandbox --------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gw(clock: FakeClock) -> AsyncIterator[SandboxGateway]:
    async with SandboxGateway(api_key=API_KEY, clock=clock.now, late_url_polls=0) as g:
        yield g


async def follow(
    make_settings: Callable[..., Settings], gw: SandboxGateway, clock: FakeClock, policy: str
) -> tuple[int, float]:
    """Polls and detection delay of one 120 s video, the clock moving 0.25 s a step."""
    settings = make_settings(
        aa_base_url=gw.base_url,
        poll_policy=policy,
        poll_first_delay_s=3.0,
        poll_interval_s=5.0,
        database_url=f"sqlite:///{gw.port}-{policy}.db",
    )
    async with open_core(settings, clock=clock) as core:
        core.notifier.register(RecordingSink())
        gw.script_next(duration=120.0)
        job = await core.service.submit(request(kind=Kind.VIDEO, model="veo"))
        for _ in range(2000):
            await core.tracker.run_once()
            await core.tracker.drain()
            await core.notifier.run_once()
            await core.notifier.drain()
            stored = await core.store.get(job.id)
            assert stored is not None
            if stored.delivery is Delivery.DELIVERED:
                break
            clock.advance(0.25)
        assert stored.state is JobState.SUCCEEDED
        task = gw.tasks[stored.upstream_task_id or ""]
        assert stored.finished_at is not None
        return task.polls, stored.finished_at - (task.created + task.duration)


async def test_adaptive_polls_less_than_fixed_and_notices_within_3_s(
    make_settings: Callable[..., Settings], gw: SandboxGateway, clock: FakeClock
) -> None:
    fixed_polls, fixed_delay = await follow(make_settings, gw, clock, "fixed")
    adaptive_polls, adaptive_delay = await follow(make_settings, gw, clock, "adaptive")
    assert fixed_polls >= 20  # every 5 s for two minutes
    assert adaptive_polls <= 8
    assert adaptive_polls < fixed_polls
    assert 0.0 <= adaptive_delay <= 3.0


def test_a_reading_too_small_to_trust_is_followed_by_another_in_time() -> None:
    """A task far quicker than the model's typical run (a wrong typical, a new model): its
    first small percentage does not let the policy sleep until the typical end."""
    sora = SPECS["sora_fast"]  # typical 180 s
    policy = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    job = new_job(sora)
    job.state, job.progress = JobState.RUNNING, 4  # 4 % after 9 s: slow start, or a quick run
    small = policy.next_delay(job, sora, 9.0)
    assert small <= BLIND_GAP * sora.typical_s

    trusted = ProgressAwarePolicy(fixed_interval_s=FIXED_INTERVAL)
    other = new_job(sora, "j2")
    other.state, other.progress = JobState.RUNNING, 30  # enough to go by: a long gap is fine
    assert trusted.next_delay(other, sora, 60.0) > BLIND_GAP * sora.typical_s
