"""Polling policies side by side: the same workload through the real tracker, notifier and
job store against the sandbox gateway on loopback, once per policy.

    python -m bench.polling                    # 100 runs per class, 5x time scale (~3 min)
    python -m bench.polling --jobs 30 --time-scale 10 --spread 20   # a quick look (~1 min)
    python -m bench.polling --real-time        # real seconds, the real `Core.run` (~15 min)

The workload (bench/workload.py): a ~2-minute video (veo) and a ~20-second image
(nanobanana), durations varying around the typical run, progress curves of many shapes
(stalls, jumps, coarse steps, a sit at 99, 100 before the link). Reported per class and
policy: status requests per job, how late the tracker noticed the end (benchmark seconds:
from the moment the gateway would first answer with the result), the time from noticing to
the upload to the chat starting (real milliseconds), and status requests per second at the
gateway. The adaptive policy starts cold (no history) and learns as jobs finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    API_KEY,
    DeliveryTimes,
    ScaledClock,
    ScriptedGateway,
    bench_settings,
    drive,
    running_notifier,
)
from bench.report import percentile, table
from bench.workload import CLASSES, RunSpec, make_runs
from bot.main.wiring import open_core
from bot.models import GenerationRequest, Kind, Origin
from bot.polling import FixedPolicy, PollPolicy, ProgressAwarePolicy

__all__ = ["Result", "main", "run_policy"]

POLICIES: dict[str, tuple[float, float] | None] = {
    "fixed 5 s": (3.0, 5.0),
    "fixed 15 s": (3.0, 15.0),
    "adaptive": None,
}


@dataclass
class Result:
    label: str
    policy: str
    jobs: int
    polls: list[int]
    delays: list[float]  # benchmark seconds
    upload_ms: list[float]  # real milliseconds
    span_s: float  # benchmark seconds from the first submit to the last end


def _policy(name: str) -> PollPolicy:
    fixed = POLICIES[name]
    return ProgressAwarePolicy() if fixed is None else FixedPolicy(*fixed)


async def run_policy(
    name: str, runs: Sequence[RunSpec], scale: float, real_time: bool
) -> list[Result]:
    clock = ScaledClock(1.0 if real_time else scale)
    by_prompt = {f"bench run {i}: {r.curve_name}": r for i, r in enumerate(runs)}
    with tempfile.TemporaryDirectory(prefix="genrelay-bench-") as tmp:
        async with ScriptedGateway(by_prompt, api_key=API_KEY, clock=clock.now) as gw:
            settings = bench_settings(Path(tmp), gw.base_url)
            async with open_core(settings, clock=clock, policy=_policy(name)) as core:
                sink = DeliveryTimes(clock, expected=len(runs))
                core.notifier.register(sink)
                stop = asyncio.Event()
                if real_time:
                    loop: asyncio.Task[None] = asyncio.create_task(core.run())
                else:
                    loop = asyncio.create_task(drive(core, clock, stop))
                start = clock.now()
                jobs: dict[str, str] = {}  # job id -> prompt
                try:
                    async with running_notifier(core) if not real_time else _nothing():
                        for i, (prompt, run) in enumerate(by_prompt.items()):
                            await clock.sleep(start + run.offset - clock.now())
                            job = await core.service.submit(
                                GenerationRequest(
                                    kind=Kind(run.kind),
                                    prompt=prompt,
                                    origin=Origin("bench", f"chat{i}", f"user{i}"),
                                    model=run.model,
                                )
                            )
                            jobs[job.id] = prompt
                        longest = max(r.offset + r.duration for r in runs) * 1.5 + 60
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(clock.real(longest)):
                                await sink.done.wait()
                finally:
                    stop.set()
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
                results: dict[str, Result] = {
                    label: Result(label, name, 0, [], [], [], 0.0) for label, *_ in CLASSES
                }
                first = min(t.created for t in gw.tasks.values())
                last = first
                for job_id, prompt in jobs.items():
                    stored = await core.store.get(job_id)
                    run = by_prompt[prompt]
                    res = results[run.label]
                    res.jobs += 1
                    task = gw.tasks.get(stored.upstream_task_id or "") if stored else None
                    if stored is None or task is None:
                        continue
                    job = stored
                    res.polls.append(task.polls)
                    end = task.created + task.duration
                    last = max(last, end)
                    if job.finished_at is not None:
                        res.delays.append(job.finished_at - end)
                        if job.id in sink.started:
                            res.upload_ms.append(
                                clock.real(sink.started[job.id] - job.finished_at) * 1000
                            )
                for res in results.values():
                    res.span_s = last - first
                return list(results.values())


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def render(results: Sequence[Result]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (r.label, list(POLICIES).index(r.policy))):
        rows.append(
            [
                r.label,
                r.policy,
                f"{len(r.delays)}/{r.jobs}",
                f"{sum(r.polls) / max(len(r.polls), 1):.1f}",
                f"{percentile(r.delays, 50):.2f}",
                f"{percentile(r.delays, 95):.2f}",
                f"{max(r.delays, default=0.0):.2f}",
                f"{percentile(r.upload_ms, 50):.0f}",
                f"{percentile(r.upload_ms, 95):.0f}",
                f"{sum(r.polls) / max(r.span_s, 1e-9):.2f}",
            ]
        )
    return table(
        [
            "class",
            "policy",
            "done",
            "status req/job",
            "late p50 s",
            "p95 s",
            "max s",
            "upload p50 ms",
            "p95 ms",
            "status req/s",
        ],
        rows,
    )


async def _main(args: argparse.Namespace) -> None:
    runs = make_runs(args.jobs, seed=args.seed, spread_s=args.spread)
    scale = 1.0 if args.real_time else args.time_scale
    results: list[Result] = []
    for name in args.policy or list(POLICIES):
        t0 = time.monotonic()
        got = await run_policy(name, runs, scale, args.real_time)
        results += got
        print(f"  {name}: {time.monotonic() - t0:.0f} s", flush=True)
    mode = "real time" if args.real_time else f"time scale {scale:g}"
    print(f"\n{args.jobs} runs per class, submitted over {args.spread:g} s, {mode}")
    print(render(results))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.polling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=100, help="runs per class (default 100)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=5.0,
        help="benchmark seconds per real second (default 5; much more and the run measures "
        "its own lag)",
    )
    parser.add_argument("--real-time", action="store_true", help="real seconds, Core.run")
    parser.add_argument("--spread", type=float, default=60.0, help="submits spread over (s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policy", action="append", choices=list(POLICIES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
