"""When to poll next: scheduling policies for jobs that are still running, and backoff for
failures (which is not the policy's business).

Two policies, both behind `PollPolicy`:

- `FixedPolicy` ("fixed"): a first poll after `first_s`, then every `interval_s`.
- `ProgressAwarePolicy` ("adaptive", the default): predicts when the task will finish from
  the model's typical duration (learned from finished jobs) and the progress the gateway
  reports, polls rarely while that end is far and closely around it. Where progress says
  nothing useful (absent, going backwards, stuck for long) it polls like "fixed".
"""

from __future__ import annotations

import logging
import random
import statistics
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot import poll_tuning as tune
from bot.catalog import ModelSpec
from bot.constants import ERROR_BACKOFF_BASE_S, ERROR_BACKOFF_CAP_S
from bot.models import Job, JobState

__all__ = [
    "POLICY_NAMES",
    "DurationHistory",
    "FixedPolicy",
    "PollPolicy",
    "ProgressAwarePolicy",
    "error_backoff",
    "make_policy",
]

log = logging.getLogger(__name__)

POLICY_NAMES = ("adaptive", "fixed")


class DurationHistory(Protocol):
    """Where finished runs are remembered (the job store)."""

    async def recent_durations(self, since: float, per_model: int) -> dict[str, list[float]]:
        """Seconds from submit to the end of recent succeeded jobs, newest first, by model."""
        ...


class PollPolicy(Protocol):
    name: str

    def first_delay(self, job: Job, spec: ModelSpec) -> float:
        """Seconds from submit to the first poll."""
        ...

    def next_delay(self, job: Job, spec: ModelSpec, now: float) -> float:
        """Seconds until the next poll of a job that is still queued or running."""
        ...

    def job_ended(self, job: Job) -> None:
        """The job reached a terminal state: learn from it, forget what was kept for it."""
        ...

    async def refresh(self, history: DurationHistory, now: float) -> None:
        """Learn from the store; called often, asks the store only every so often."""
        ...


class FixedPolicy:
    """Poll every `interval_s`, the first time after `first_s`."""

    name = "fixed"

    def __init__(self, first_s: float = 3.0, interval_s: float = 5.0) -> None:
        self.first_s = first_s
        self.interval_s = interval_s

    def first_delay(self, job: Job, spec: ModelSpec) -> float:
        return self.first_s

    def next_delay(self, job: Job, spec: ModelSpec, now: float) -> float:
        return self.interval_s

    def job_ended(self, job: Job) -> None:
        return None

    async def refresh(self, history: DurationHistory, now: float) -> None:
        return None


@dataclass(slots=True)
class _Track:
    """What the adaptive policy remembers of one job between polls (a few numbers)."""

    anchor_t: float  # the first reading with 0 < progress < 100 since the last reset
    anchor_p: int
    change_t: float  # the first reading of the current percentage
    change_p: int
    seen_t: float  # the latest reading of the current percentage
    prev_t: float | None = None  # the first and the last reading of the percentage before
    prev_last_t: float = 0.0
    prev_p: int = 0
    at100_t: float | None = None  # since when it reads 100 without a result
    step: int = 10  # the coarseness of the percentage: 10, 5 or 1


class ProgressAwarePolicy:
    """Polls around the predicted end of each task, rarely while it is far.

    What it knows: the model's typical run (the median of its recent succeeded jobs,
    `ModelSpec.typical_s` until three have finished, or while more of the jobs it follows
    have outrun that median than finished within it) and how much sooner the fastest runs
    end (`spread`: 1 - the 5th percentile / the median, 0.4 until ten have finished); the
    percentage each poll reports and how fast it has been moving (a few numbers per job, in
    memory, dropped when the job ends; after a restart the first reading starts afresh).

    - No percentage yet (queued, or running at 0 %): nothing until the earliest plausible
      end, typical * (1 - spread), except one early poll (`first_delay`) for tasks that
      fail at once. Still queued after it: every half of that again. Still running without
      a percentage: the fixed interval.
    - One reading: the end the percentage implies as a share of the time since submit,
      blended with the typical run while it is under 30 %.
    - Two or more: the speed of the latest stretch (bent upwards when it accelerates) gives
      the expected end; the earliest plausible end allows for a coarse percentage (steps of
      5 or 10) and for the share above. Until a job outlasts typical * (1 + 1.2 * spread)
      that bounds both; after, the progress alone counts.
    - The next poll is at the earliest plausible end, moved closer by an uncertainty that
      shrinks from `spread` at 0 % to 10 % at 100 %, at least one close gap away (9 % of
      the typical run, 1-2.5 s). When the window up to the expected end fits in one close
      gap, it polls just after the expected end instead.
    - Past the expected end (a stall near the end): every close gap, backing off a little;
      overdue by 30 % of the typical run, the prediction is worthless: the fixed interval.
    - 100 % without a result (the late-URL quirk): every second for 10 s, then the fixed
      interval. Going backwards: the fixed interval, and the readings start again.
    - No gap is ever longer than `max_gap_s` or shorter than half a second.
    """

    name = "adaptive"

    def __init__(
        self,
        *,
        max_gap_s: float = 150.0,
        fixed_interval_s: float = 5.0,
        early_s: float = tune.EARLY_POLL_MAX_S,
    ) -> None:
        self.max_gap_s = max_gap_s
        self.fixed_interval_s = min(fixed_interval_s, max_gap_s)
        self.early_s = early_s
        self._tracks: dict[str, _Track] = {}
        self._samples: dict[str, list[float]] = {}  # model -> recent durations, newest last
        self._learned: dict[str, tuple[float, float]] = {}  # model -> (median, spread)
        self._refreshed_at: float | None = None
        # model -> {job id: (submitted, last seen)} of the jobs followed, and whether more of
        # them have outrun the learned median than finished within it (checked each second)
        self._running: dict[str, dict[str, tuple[float, float]]] = {}
        self._doubt: dict[str, tuple[float, bool]] = {}
        self._now = 0.0

    # -- what it knows about a model ---------------------------------------------------------

    def typical(self, job: Job, spec: ModelSpec) -> tuple[float, float]:
        """(typical duration, spread) for the job's model: learned, else the catalog's (or
        the learned median if longer) while more running jobs have outrun that median than
        finished within it (a burst: only its quickest runs have ended yet)."""
        model = job.model if job.model in self._learned else spec.code
        learned = self._learned.get(model)
        if learned is not None and not self._outrun(model, learned[0]):
            return learned
        floor = learned[0] if learned is not None else 1.0
        return max(spec.typical_s, floor), tune.SPREAD

    def _outrun(self, model: str, median: float) -> bool:
        at, doubt = self._doubt.get(model, (float("-inf"), False))
        if self._now - at < tune.OUTRUN_CHECK_S:
            return doubt
        recent = self._now - 2 * self.max_gap_s - 1.0  # seen since: still followed here
        running = self._running.get(model, {})
        slower = sum(1 for s, seen in running.values() if self._now - s > median and seen > recent)
        samples = self._samples.get(model, [])
        within = sum(1 for d in samples if d <= median)
        doubt = within < len(samples) - within + slower
        self._doubt[model] = (self._now, doubt)
        return doubt

    def _learn(self, model: str) -> None:
        samples = self._samples.get(model, [])
        if len(samples) < tune.LEARN_MIN_SAMPLES:
            self._learned.pop(model, None)
            return
        ordered = sorted(samples)
        median = statistics.median(ordered)
        if median <= 0:
            return
        spread = tune.SPREAD
        if len(ordered) >= 10:
            low = ordered[max(int(len(ordered) * 0.05) - 1, 0)]
            spread = min(max(1.0 - low / median, tune.SPREAD_MIN), tune.SPREAD_MAX)
        self._learned[model] = (median, spread)

    def job_ended(self, job: Job) -> None:
        self._tracks.pop(job.id, None)
        self._running.get(job.model, {}).pop(job.id, None)
        if job.state is not JobState.SUCCEEDED or job.submitted_at is None:
            return
        if job.finished_at is None or job.finished_at <= job.submitted_at:
            return
        samples = self._samples.setdefault(job.model, [])
        samples.append(job.finished_at - job.submitted_at)
        del samples[: -tune.LEARN_SAMPLES]
        self._learn(job.model)

    async def refresh(self, history: DurationHistory, now: float) -> None:
        if self._refreshed_at is not None and now - self._refreshed_at < tune.LEARN_REFRESH_S:
            return
        self._refreshed_at = now
        try:
            found = await history.recent_durations(now - tune.LEARN_WINDOW_S, tune.LEARN_SAMPLES)
        except Exception as exc:  # learning is an optimisation, never a reason to stop
            log.warning("could not read recent durations (%s); keeping what I know", exc)
            return
        for model, durations in found.items():
            self._samples[model] = [d for d in reversed(durations) if d > 0][-tune.LEARN_SAMPLES :]
            self._learn(model)
        log.debug("learned typical durations: %s", self._learned)

    def learn_durations(self, durations: Mapping[str, Sequence[float]]) -> None:
        """Seed the history by hand (oldest first), e.g. in tests and benchmarks."""
        for model, values in durations.items():
            self._samples[model] = [float(v) for v in values if v > 0][-tune.LEARN_SAMPLES :]
            self._learn(model)

    # -- scheduling --------------------------------------------------------------------------

    def _close(self, typical: float) -> float:
        return min(max(tune.CLOSE_FRACTION * typical, tune.CLOSE_MIN_S), tune.CLOSE_MAX_S)

    def _bounded(self, gap: float) -> float:
        return min(max(gap, tune.MIN_GAP_S), self.max_gap_s)

    def first_delay(self, job: Job, spec: ModelSpec) -> float:
        typical, _ = self.typical(job, spec)
        self._tracks.pop(job.id, None)
        return self._bounded(min(self.early_s, tune.EARLY_POLL_FRACTION * typical))

    def next_delay(self, job: Job, spec: ModelSpec, now: float) -> float:
        self._now = max(self._now, now)
        if job.submitted_at is not None:
            running = self._running.setdefault(job.model, {})
            running[job.id] = (job.submitted_at, now)
            if len(running) > tune.MAX_TRACKED_JOBS:
                running.pop(next(iter(running)))
        gap = self._next_gap(job, spec, now)
        if gap > self.max_gap_s:
            # Held to the cap: jobs submitted together (or all made due by a restart) would
            # stay in step for hours; a little less, differently per job, spreads them.
            unit = zlib.crc32(f"{job.id}:{job.poll_count}".encode()) / 2**32
            gap = self.max_gap_s * (1.0 - tune.CAP_SPREAD * unit)
        return self._bounded(gap)

    def _next_gap(self, job: Job, spec: ModelSpec, now: float) -> float:
        typical, spread = self.typical(job, spec)
        close = self._close(typical)
        submitted = job.submitted_at if job.submitted_at is not None else now
        p = job.progress
        if job.state is not JobState.RUNNING or p <= 0:
            return self._gap_without_progress(job, submitted, typical, spread, close, now)
        if p >= 100:
            return self._late_url_gap(job.id, now)
        track = self._read(job.id, p, now)
        if track is None:
            return self.fixed_interval_s  # it went backwards
        expected, target = self._predict(track, p, submitted, typical, spread, now)
        # What progress may skip:
        longest_gap = max(tune.LONGEST_GAP * typical, tune.LONGEST_GAP_MIN_S)
        if p < tune.PROGRESS_TRUST:  # a reading too small to trust: the next one soon enough
            longest_gap = min(longest_gap, max(tune.BLIND_GAP * typical, tune.LONGEST_GAP_MIN_S))
        if expected - target <= close < expected - now:
            # The whole window fits in one close gap: just after the expected end.
            return min(expected - now + tune.AIM_AFTER_S, longest_gap)
        if target - now > close:
            return min(target - now, longest_gap)  # the earliest plausible end
        if now < expected:
            return close
        return self._overdue_gap(now - expected, close, typical)

    def _gap_without_progress(
        self, job: Job, submitted: float, typical: float, spread: float, close: float, now: float
    ) -> float:
        """No percentage yet: nothing to see before the earliest plausible end."""
        earliest = submitted + (1.0 - spread) * typical
        if earliest - now > close:
            return earliest - now
        if job.state is JobState.RUNNING:
            return self.fixed_interval_s  # running, and still no percentage: none comes
        # Still queued (a backlog upstream): it cannot end before it has run a while.
        return max(tune.QUEUED_GAP * (1.0 - spread) * typical, close)

    def _late_url_gap(self, job_id: str, now: float) -> float:
        """The late-URL quirk: done, but the result link is not there yet."""
        track = self._tracks.get(job_id)
        if track is None:
            track = self._remember(job_id, _Track(now, 100, now, 100, now))
        if track.at100_t is None:
            track.at100_t = now
        if now - track.at100_t < tune.LATE_URL_PATIENCE_S:
            return tune.LATE_URL_GAP_S
        return self.fixed_interval_s

    def _read(self, job_id: str, p: int, now: float) -> _Track | None:
        """Take in a reading of 0 < p < 100; None when it went backwards (the readings
        start again from here)."""
        track = self._tracks.get(job_id)
        if track is None or track.at100_t is not None:
            track = self._remember(job_id, _Track(now, p, now, p, now))
        elif p < track.change_p:
            # Going backwards: the numbers mean nothing we can use; start again from here.
            self._remember(job_id, _Track(now, p, now, p, now))
            return None
        elif p > track.change_p:
            track.prev_t, track.prev_last_t, track.prev_p = (
                track.change_t,
                track.seen_t,
                track.change_p,
            )
            track.change_t, track.change_p = now, p
        track.seen_t = now
        if p % 10:
            track.step = 1 if p % 5 else min(track.step, 5)
        return track

    def _predict(
        self, track: _Track, p: int, submitted: float, typical: float, spread: float, now: float
    ) -> tuple[float, float]:
        """(expected end, when to poll next at the earliest) from the readings so far."""
        # The typical run bounds what progress says, until the job outlasts it; the
        # percentage as a share of the time since submit is blended with the typical run
        # while it is small.
        longest = submitted + typical * (1.0 + tune.LONGEST * spread)
        if now >= longest:
            longest = float("inf")
        elapsed = max(now - submitted, 0.0)
        weight = min(p / tune.PROGRESS_TRUST, 1.0)
        by_share = submitted + weight * elapsed * 100.0 / p + (1.0 - weight) * typical
        by_share = min(by_share, longest)
        speeds = self._speeds(track)
        if speeds is None:
            # One reading: the share is all there is, and the spread its uncertainty.
            return by_share, now + (by_share - now) * (1.0 - spread)
        # The speed of the latest stretch, from the latest change. The earliest end allows
        # for the percentage's coarseness and for what the share says, and it is less
        # uncertain as the progress grows.
        slow, fast = speeds
        left = 100 - track.change_p
        expected = min(track.change_t + left / slow, longest)
        earliest = track.change_t + max(left - track.step, 0) / fast
        earliest = min(earliest, by_share, longest)
        uncertainty = tune.UNCERTAINTY_END + (spread - tune.UNCERTAINTY_END) * (1.0 - p / 100.0)
        return expected, now + (earliest - now) * (1.0 - uncertainty)

    @staticmethod
    def _speeds(track: _Track) -> tuple[float, float] | None:
        """Percent per second of the latest stretch: from the first and from the last
        reading of the percentage before (the change came somewhere between), both faster
        when the curve bends upwards."""
        if track.prev_t is None or track.change_t <= track.prev_last_t:
            return None
        moved = track.change_p - track.prev_p
        slow = moved / (track.change_t - track.prev_t)
        fast = moved / (track.change_t - track.prev_last_t)
        if track.prev_t > track.anchor_t and track.prev_p > track.anchor_p:
            old = (track.prev_p - track.anchor_p) / (track.prev_t - track.anchor_t)
            if slow > old:  # accelerating: assume it goes on, up to doubling
                bend = (slow - old) / ((track.change_t - track.anchor_t) / 2)
                boost = min(1.0 + bend * (track.change_t - track.prev_t) / 2 / slow, 2.0)
                slow, fast = slow * boost, fast * boost
        return slow, fast

    def _overdue_gap(self, overdue: float, close: float, typical: float) -> float:
        """Past the predicted end (a stall near the end): closely at first, backing off a
        little; overdue for long, the prediction is worth nothing: the fixed interval."""
        if overdue > max(tune.OVERDUE_PATIENCE * typical, tune.LATE_URL_PATIENCE_S):
            return self.fixed_interval_s
        longest = min(close * tune.OVERDUE_MAX_CLOSES, self.fixed_interval_s)
        return min(max(tune.OVERDUE_BACKOFF * overdue, close), longest)

    def _remember(self, job_id: str, track: _Track) -> _Track:
        self._tracks.pop(job_id, None)
        self._tracks[job_id] = track
        while len(self._tracks) > tune.MAX_TRACKED_JOBS:
            self._tracks.pop(next(iter(self._tracks)))
        return track

    @property
    def tracked(self) -> int:
        """Jobs with per-job state in memory."""
        return len(self._tracks)


def make_policy(
    name: str,
    *,
    first_s: float = 3.0,
    interval_s: float = 5.0,
    max_gap_s: float = 150.0,
) -> PollPolicy:
    """The policy called `name` ("adaptive" or "fixed") with these settings."""
    if name == "fixed":
        return FixedPolicy(first_s, interval_s)
    if name == "adaptive":
        return ProgressAwarePolicy(max_gap_s=max_gap_s, fixed_interval_s=interval_s)
    raise ValueError(f"unknown poll policy {name!r}; use one of {', '.join(POLICY_NAMES)}")


def error_backoff(streak: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter in its upper half: streak 1 -> 1-2 s, 2 -> 2-4 s..."""
    ceiling = min(ERROR_BACKOFF_BASE_S * (2 ** max(streak - 1, 0)), ERROR_BACKOFF_CAP_S)
    return float(ceiling * (0.5 + 0.5 * (rng or random).random()))
