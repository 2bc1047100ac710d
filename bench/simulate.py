"""A quick, pure simulation of the polling policies on the benchmark workload (no HTTP, no
store): what each policy costs and how late it notices, in a second. `bench.polling` is the
real measurement; this is for tuning. `python -m bench.simulate [--jobs N]`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from bench.report import percentile, table
from bench.workload import CLASSES, RunSpec, make_runs
from bot.catalog import default_specs
from bot.models import Job, JobState, Kind, Origin
from bot.polling import FixedPolicy, PollPolicy, ProgressAwarePolicy

__all__ = ["main", "simulate"]

QUEUED_FRACTION = 0.1  # as the sandbox


def _run_one(policy: PollPolicy, run: RunSpec) -> tuple[int, float, Job]:
    spec = next(s for s in default_specs() if s.code == run.model)
    job = Job(
        id=f"sim-{id(run)}",
        kind=Kind(run.kind),
        model=run.model,
        prompt="p",
        origin=Origin("bench", "c", "u"),
        state=JobState.QUEUED,
        submitted_at=0.0,
    )
    t = policy.first_delay(job, spec)
    polls = 0
    while True:
        polls += 1
        if t >= run.duration:
            job.state = JobState.SUCCEEDED
            job.finished_at = t
            job.progress = 100
            policy.job_ended(job)
            return polls, t - run.duration, job
        f = t / run.duration
        if f < QUEUED_FRACTION:
            job.state, job.progress = JobState.QUEUED, 0
        else:
            job.state, job.progress = JobState.RUNNING, min(max(run.curve(f), 0), 100)
        t += policy.next_delay(job, spec, t)


def simulate(policy: PollPolicy, runs: Sequence[RunSpec]) -> dict[str, tuple[float, ...]]:
    """label -> (polls per job, delay p50, p95, max)."""
    out: dict[str, tuple[float, ...]] = {}
    for label, *_ in CLASSES:
        polls: list[int] = []
        delays: list[float] = []
        for run in runs:
            if run.label == label:
                n, delay, _ = _run_one(policy, run)
                polls.append(n)
                delays.append(delay)
        out[label] = (
            sum(polls) / len(polls),
            percentile(delays, 50),
            percentile(delays, 95),
            max(delays),
        )
    return out


POLICIES: dict[str, Callable[[], PollPolicy]] = {
    "fixed 5 s": lambda: FixedPolicy(3.0, 5.0),
    "fixed 15 s": lambda: FixedPolicy(3.0, 15.0),
    "adaptive": lambda: ProgressAwarePolicy(),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="runs per class (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    runs = make_runs(args.jobs, seed=args.seed)
    rows = []
    for name, factory in POLICIES.items():
        for label, (polls, p50, p95, worst) in simulate(factory(), runs).items():
            rows.append([label, name, f"{polls:.1f}", f"{p50:.2f}", f"{p95:.2f}", f"{worst:.2f}"])
    rows.sort(key=lambda r: r[0])
    print(f"simulated, {args.jobs} runs per class (no HTTP; see bench.polling for the real run)")
    print(table(["class", "policy", "polls/job", "delay p50 s", "p95 s", "max s"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
