"""Jobs in flight vs memory, CPU and store writes: one process with the real Core (tracker,
notifier, job store, adaptive policy) following up to 10,000 long-running jobs on the
sandbox gateway, which runs in a separate process so that its work is not counted.

    python -m bench.scale                      # 1k, 2.5k, 5k, 10k in flight (~25 min)
    python -m bench.scale --max-jobs 2000
    python -m bench.scale --replicas 2 --database postgresql://postgres@127.0.0.1:5432/test
                                               # beside 2 replicas on PostgreSQL (~8 min;
                                               # --quick ~2 min): see bench/scale_replicas.py

At each level, jobs are submitted until that many are in flight, then the process is
measured over a window of real time in which no job ends (their runs are 100 minutes to 5
hours, and the policy has learned so from earlier runs; they come from 100 chats):
CPU of the whole process as a share of one core, resident memory now and at peak, status
requests and committed store writes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import API_KEY, bench_settings, free_port, peak_rss_mb, rss_mb
from bench.report import table
from bot.app import Core
from bot.main.wiring import open_core
from bot.models import GenerationRequest, Kind, Origin
from bot.polling import ProgressAwarePolicy

__all__ = ["main"]

LEVELS = (1000, 2500, 5000, 10000)
SANDBOX_SPEED = 3000.0  # veo 6 s x 3000 = 5 h, nanobanana 2 s x 3000 = 100 min
CHATS = 100  # jobs come from 100 chats, one user each
RUN_DEADLINE_S = 12 * 3600.0  # past the longest run (5 h)
SUBMIT_BATCH = 200
WINDOW_S = 160.0  # longer than the 150 s cap on gaps: every job is polled in it


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("the sandbox gateway did not start")


async def _polls(core: Core) -> int:
    async with core.store.db.execute("SELECT COALESCE(SUM(poll_count), 0) FROM jobs") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _in_flight(core: Core) -> int:
    return await core.store.count_unfinished()


async def _main(args: argparse.Namespace) -> None:
    levels = [n for n in LEVELS if n < args.max_jobs] + [args.max_jobs]
    port = free_port()
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.gateway",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--speed",
        str(SANDBOX_SPEED),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[list[str]] = []
    baseline = rss_mb()
    try:
        await _wait_listening(port)
        with tempfile.TemporaryDirectory(prefix="genrelay-scale-") as tmp:
            settings = bench_settings(
                Path(tmp),
                f"http://127.0.0.1:{port}",
                tracker_concurrency=64,
                # The runs are hours long: no job may reach its deadline while measuring.
                image_deadline_s=RUN_DEADLINE_S,
                video_deadline_s=RUN_DEADLINE_S,
            )
            policy = ProgressAwarePolicy()
            # A service that has run these models before knows their runs are long.
            runs = {"veo": 6.0 * SANDBOX_SPEED, "nanobanana": 2.0 * SANDBOX_SPEED}
            policy.learn_durations({m: [d * f for f in (0.9, 1.0, 1.1)] for m, d in runs.items()})
            async with open_core(settings, policy=policy) as core:
                runner = asyncio.create_task(core.run())
                submitted = 0
                try:
                    for level in levels:
                        ramp0, from_n = time.monotonic(), submitted
                        while submitted < level:
                            batch = min(SUBMIT_BATCH, level - submitted)
                            for i in range(submitted, submitted + batch):
                                video = i % 2 == 0
                                await core.service.submit(
                                    GenerationRequest(
                                        kind=Kind.VIDEO if video else Kind.IMAGE,
                                        prompt=f"scale run {i}",
                                        origin=Origin(
                                            "bench", f"chat{i % CHATS}", f"user{i % CHATS}"
                                        ),
                                        model="veo" if video else "nanobanana",
                                    )
                                )
                            submitted += batch
                            await asyncio.sleep(0.2)  # let the tracker submit them
                        for _ in range(1200):  # until the tracker has submitted them all
                            if not await _count_received(core):
                                break
                            await asyncio.sleep(0.5)
                        ramp = (submitted - from_n) / (time.monotonic() - ramp0)
                        await asyncio.sleep(args.settle)
                        cpu0, wall0 = time.process_time(), time.monotonic()
                        writes0, polls0 = core.store.writes, await _polls(core)
                        profile = cProfile.Profile() if args.profile else None
                        if profile is not None:
                            profile.enable()
                        await asyncio.sleep(args.window)
                        if profile is not None:
                            profile.disable()
                            profile.dump_stats(f"{args.profile}.{level}")
                        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                        writes = core.store.writes - writes0
                        polls = await _polls(core) - polls0
                        rows.append(
                            [
                                f"{await _in_flight(core):,}",
                                f"{100 * cpu / wall:.1f} %",
                                f"{rss_mb():.0f}",
                                f"{peak_rss_mb():.0f}",
                                f"{polls / wall:.1f}",
                                f"{writes / wall:.1f}",
                                f"{policy.tracked:,}",
                                f"{ramp:.0f}",
                            ]
                        )
                        print("  " + " | ".join(rows[-1]), flush=True)
                finally:
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
    finally:
        gateway.terminate()
        await gateway.wait()
    print(
        f"\nmeasured over {args.window:g} s at each level, no job ending meanwhile; "
        f"RSS before the store opened: {baseline:.0f} MB"
    )
    print(
        table(
            [
                "jobs in flight",
                "CPU (one core)",
                "RSS MB",
                "peak RSS MB",
                "status req/s",
                "store writes/s",
                "policy memory (jobs)",
                "submitted/s before",
            ],
            rows,
        )
    )


async def _count_received(core: Core) -> int:
    async with core.store.db.execute(
        "SELECT COUNT(*) FROM jobs WHERE state IN ('received', 'submitting')"
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--max-jobs", type=int, default=10000, help="default 10000")
    parser.add_argument(
        "--window",
        type=float,
        default=WINDOW_S,
        help="seconds measured per level (default 160: longer than the 150 s cap on gaps, "
        "so every job is polled in it)",
    )
    parser.add_argument("--profile", metavar="FILE", help="cProfile each window to FILE.<level>")
    parser.add_argument("--settle", type=float, default=None, help="seconds before measuring")
    _replica_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.replicas:
        return _replicas(parser, args)
    args.settle = 10.0 if args.settle is None else args.settle
    asyncio.run(_main(args))
    return 0


def _replica_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several replicas", "one SQLite process beside N replicas on PostgreSQL, in one run"
    )
    group.add_argument("--replicas", type=int, default=0, help="N (2 or more)")
    group.add_argument("--database", help="postgresql:// URL (a fresh schema is made there)")
    group.add_argument(
        "--levels",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        help="jobs in flight, comma-separated (default 1000,2500; --quick 200,500)",
    )
    group.add_argument("--quick", action="store_true", help="small levels, 20 s windows")
    group.add_argument("--same-host", action="store_true", help="replicas see each other's pids")
    group.add_argument("--one-at-a-time", action="store_true", help="not side by side")


def _replicas(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bench.scale_replicas import run

    if args.replicas < 2 or not (args.database or "").startswith("postgresql://"):
        parser.error("--replicas needs 2 or more and --database postgresql://...")
    if args.quick:
        args.window = 20.0 if args.window == WINDOW_S else args.window
    args.settle = (3.0 if args.quick else 10.0) if args.settle is None else args.settle
    started = time.monotonic()
    result = asyncio.run(run(args))
    print(
        f"\nmeasured over {args.window:g} s at each level, no job ending meanwhile "
        f"(whole run {time.monotonic() - started:.0f} s)"
    )
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
