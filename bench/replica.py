"""One replica for `python -m bench.scale --replicas N`: a real Core (`open_core(settings)`)
on DATABASE, run by the Runner as `genrelay run` runs it (tracker, notifier, sweeps,
heartbeat), following jobs on the gateway at GATEWAY, and holding a lease named `bench`
the way `genrelay run` holds Telegram: a LeasedAdapter around an adapter that does nothing.

    python -m bench.replica --database URL --gateway URL --data DIR [--host NAME]

It prints `READY <replica name>` once its core is open, then answers one line per line read:

    submit FIRST COUNT   -> `ok` once COUNT jobs numbered from FIRST are recorded
    stats                -> one JSON object: statements, writes, waiting (jobs not yet
                            submitted upstream), unfinished, lease_held, lease_since
    (end of input)       -> it stops

`--host` names the host it says it runs on (as a container's own hostname): replicas on
different hosts judge each other by heartbeat, on one host by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.common import bench_settings
from bot.app import Core
from bot.leases import LeasedAdapter, LeaseKeeper
from bot.main.wiring import open_core
from bot.models import GenerationRequest, Kind, Origin
from bot.owners import Owners
from bot.polling import ProgressAwarePolicy
from bot.ports import SystemClock
from bot.runner import Runner
from bot.supervisor import AdapterSupervisor

__all__ = ["LEASE", "long_runs_policy", "main", "request"]

LEASE = "bench"  # the platform connection the replicas contend for
SANDBOX_SPEED = 3000.0  # veo 6 s x 3000 = 5 h, nanobanana 2 s x 3000 = 100 min
CHATS = 100  # jobs come from 100 chats, one user each
RUN_DEADLINE_S = 12 * 3600.0  # past the longest run (5 h)
SUBMIT_BATCH = 200


def long_runs_policy() -> ProgressAwarePolicy:
    """The adaptive policy of a service that has run these models before: it knows their
    runs are long (100 minutes to 5 hours)."""
    policy = ProgressAwarePolicy()
    runs = {"veo": 6.0 * SANDBOX_SPEED, "nanobanana": 2.0 * SANDBOX_SPEED}
    policy.learn_durations({m: [d * f for f in (0.9, 1.0, 1.1)] for m, d in runs.items()})
    return policy


def request(i: int) -> GenerationRequest:
    """Job number `i`: videos and images by turns, from 100 chats."""
    video = i % 2 == 0
    return GenerationRequest(
        kind=Kind.VIDEO if video else Kind.IMAGE,
        prompt=f"scale run {i}",
        origin=Origin("bench", f"chat{i % CHATS}", f"user{i % CHATS}"),
        model="veo" if video else "nanobanana",
    )


class IdleAdapter:
    """A platform connection that does nothing: what the lease is held for."""

    platform = LEASE
    connected = True

    async def stop_intake(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


async def _submit(core: Core, first: int, count: int) -> None:
    for start in range(first, first + count, SUBMIT_BATCH):
        for i in range(start, min(start + SUBMIT_BATCH, first + count)):
            await core.service.submit(request(i))
        await asyncio.sleep(0.2)  # let the tracker submit them


async def _count(core: Core, sql: str) -> int:
    store: Any = core.store  # either engine's: `db` is theirs, not the port's
    async with store.db.execute(sql) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _stats(core: Core, keeper: LeaseKeeper) -> dict[str, object]:
    waiting = "SELECT COUNT(*) FROM jobs WHERE state IN ('received', 'submitting')"
    store: Any = core.store
    return {
        "statements": store.statements,
        "writes": store.writes,
        "waiting": await _count(core, waiting),
        "unfinished": await store.count_unfinished(),
        "lease_held": keeper.held,
        "lease_since": keeper.since,
    }


async def _serve(core: Core, keeper: LeaseKeeper) -> None:
    """Answer the commands on stdin until it ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "submit":
            await _submit(core, int(line[1]), int(line[2]))
            print("ok", flush=True)
        elif line[0] == "stats":
            print(json.dumps(await _stats(core, keeper)), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {line[0]}"}), flush=True)


async def _main(args: argparse.Namespace) -> None:
    settings = bench_settings(
        Path(args.data),
        args.gateway,
        database_url=args.database,
        tracker_concurrency=64,
        # The runs are hours long: no job may reach its deadline while measuring.
        image_deadline_s=RUN_DEADLINE_S,
        video_deadline_s=RUN_DEADLINE_S,
    )
    clock = SystemClock()
    owners = Owners(clock=clock.now)
    if args.host:
        owners = Owners(f"{args.host}:{os.getpid()}", host=args.host, clock=clock.now)
    async with open_core(settings, policy=long_runs_policy(), owners=owners, clock=clock) as core:
        await core.store.count_statements()  # type: ignore[attr-defined]  # both stores have it
        keeper = LeaseKeeper(core.store, LEASE, core.owners, core.clock)
        leased = LeasedAdapter(keeper, lambda: AdapterSupervisor(IdleAdapter, first_s=1, max_s=1))
        async with Runner(core, [leased]) as runner:
            print(f"READY {core.owners.name}", flush=True)
            await runner.until(_serve(core, keeper))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replica",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database", required=True, help="DATABASE_URL")
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--data", required=True, help="a data directory of its own")
    parser.add_argument("--host", help="the host name it says it runs on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
