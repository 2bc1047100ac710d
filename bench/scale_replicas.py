"""`python -m bench.scale --replicas N --database postgresql://...`: in one run, side by side,

- one process on SQLite (today's setup), and
- N replicas (separate processes, each a real Core run as `genrelay run` runs it) on one
  fresh schema of that PostgreSQL database (dropped after),

each following the same number of long-running jobs on a sandbox gateway of its own (in a
process of its own: its work is not counted), at each level of jobs in flight. Every process
runs `python -m bench.replica` and holds, or waits for, a lease as `genrelay run` does
Telegram. Measured over a window in which no job ends: CPU of each process (share of one
core, from /proc), store statements per second (each a round trip: to the server on
PostgreSQL, to the connection's thread on SQLite; BEGIN and COMMIT count) and status
requests per second (the gateway's count). Then the replica holding the lease is killed
(-9) and the time is taken from the kill to another holding the lease, and to the first
and the last poll of the jobs the dead one had claimed (those not due for a while yet: a
poll of one is the takeover's, not its turn coming); a new replica then takes its place.

By default the replicas say they run on hosts of their own (as containers do), so they
judge each other by heartbeat; `--same-host` lets them see each other's pids instead."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.fleet import GatewayProcess, ReplicaProcess, cpu_seconds, rss_mb_of
from bench.replica import SANDBOX_SPEED
from bench.report import table

__all__ = ["HEADERS", "LEVELS", "QUICK_LEVELS", "run"]

LEVELS = (1000, 2500)
QUICK_LEVELS = (200, 500)
HORIZON_S = 45.0  # the dead one's jobs watched: those not due before the kill + this
WATCH_S = 0.05  # how often the takeover is looked at
SUBMITTED_WAIT_S = 600.0  # the longest wait for the tracker to submit a level's jobs

HEADERS = [
    "setup",
    "jobs in flight",
    "CPU per process (one core)",
    "RSS MB per process",
    "store statements/s",
    "status requests/s",
    "takeover: lease (s)",
    "first / last orphan polled (s)",
]


@dataclass
class Setup:
    """One side of the comparison: its processes, its gateway and its rows."""

    label: str
    database: str
    replicas: int
    tmp: Path
    hosts: bool  # each replica says it runs on a host of its own
    gateway: GatewayProcess | None = None
    procs: list[ReplicaProcess] = field(default_factory=list)
    started: int = 0
    rows: list[list[str]] = field(default_factory=list)

    async def add_replica(self) -> ReplicaProcess:
        assert self.gateway is not None
        n = self.started
        self.started += 1
        host = f"bench-host-{n}" if self.hosts else None
        data = self.tmp / f"replica-{n}"
        proc = await ReplicaProcess.start(self.database, self.gateway.url, data, host)
        self.procs.append(proc)
        return proc


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def fresh_schema(server: str) -> Any:
    """A schema of its own on the PostgreSQL server: its DATABASE_URL; dropped after."""
    schema = f"genrelay_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def _submit(setup: Setup, first: int, level: int) -> None:
    """Jobs `first`..`level`, shared between the replicas; back once all are submitted
    upstream (none waits in the store)."""
    count, n = level - first, len(setup.procs)
    shares = [count // n + (1 if i < count % n else 0) for i in range(n)]
    starts = [first + sum(shares[:i]) for i in range(n)]
    await asyncio.gather(
        *(p.submit(s, c) for p, s, c in zip(setup.procs, starts, shares, strict=True))
    )
    for _ in range(int(SUBMITTED_WAIT_S / 0.5)):
        if not (await setup.procs[0].stats())["waiting"]:
            break
        await asyncio.sleep(0.5)


async def _measure(setup: Setup, window: float) -> list[str]:
    """In flight, CPU and memory per process, statements/s and status requests/s."""
    assert setup.gateway is not None
    procs = setup.procs
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    stmts0 = [(await p.stats())["statements"] for p in procs]
    polls0, wall0 = await setup.gateway.polls(), time.monotonic()
    await asyncio.sleep(window)
    wall = time.monotonic() - wall0
    cpu = [(cpu_seconds(p.pid) - c) / wall for p, c in zip(procs, cpu0, strict=True)]
    polls = (await setup.gateway.polls() - polls0) / wall
    stats = [await p.stats() for p in procs]
    stmts = [(s["statements"] - s0) / wall for s, s0 in zip(stats, stmts0, strict=True)]
    each = " + ".join(f"{x:.1f}" for x in stmts)
    return [
        f"{stats[0]['unfinished']:,}",
        " / ".join(f"{100 * c:.1f} %" for c in cpu),
        " / ".join(f"{rss_mb_of(p.pid):.0f}" for p in procs),
        f"{sum(stmts):.1f}" + (f" ({each})" if len(procs) > 1 else ""),
        f"{polls:.1f}",
    ]


async def _holder(setup: Setup) -> ReplicaProcess:
    for _ in range(600):
        for proc in setup.procs:
            if (await proc.stats())["lease_held"]:
                return proc
        await asyncio.sleep(0.1)
    raise RuntimeError("no replica took the lease in a minute")


async def _polled(conn: psycopg.AsyncConnection[Any], before: dict[str, int]) -> set[str]:
    cur = await conn.execute("SELECT id, poll_count FROM jobs WHERE id = ANY(%s)", (list(before),))
    return {str(i) for i, count in await cur.fetchall() if count > before[str(i)]}


async def _takeover(setup: Setup) -> list[str]:
    """Kill the lease's holder; seconds until another holds it, and until the first and the
    last of the dead one's jobs (not due within HORIZON_S) were polled again."""
    dead = await _holder(setup)
    survivors = [p for p in setup.procs if p is not dead]
    async with await psycopg.AsyncConnection.connect(setup.database, autocommit=True) as conn:
        killed = time.time()
        await dead.kill()
        setup.procs.remove(dead)
        cur = await conn.execute(
            "SELECT id, poll_count FROM jobs WHERE claimed_by = %s"
            " AND state IN ('queued', 'running') AND next_poll_at > %s",
            (dead.name, killed + HORIZON_S),
        )
        before = {str(i): int(n) for i, n in await cur.fetchall()}
        lease: float | None = None
        first: float | None = None
        last: float | None = None
        while time.time() < killed + HORIZON_S and (lease is None or (before and last is None)):
            if lease is None:
                for proc in survivors:
                    stats = await proc.stats()
                    if stats["lease_held"]:
                        lease = float(stats["lease_since"]) - killed
            polled = await _polled(conn, before) if before and last is None else set()
            if polled and first is None:
                first = time.time() - killed
            if before and len(polled) == len(before):
                last = time.time() - killed
            await asyncio.sleep(WATCH_S)
    await setup.add_replica()  # a new one takes the dead one's place

    def secs(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    return [secs(lease), f"{secs(first)} / {secs(last)} (of {len(before)})"]


async def _run_setup(setup: Setup, levels: Sequence[int], args: argparse.Namespace) -> None:
    setup.gateway = await GatewayProcess.start(SANDBOX_SPEED, setup.tmp / "gateway.log")
    try:
        for _ in range(setup.replicas):
            await setup.add_replica()
        first = 0
        for level in levels:
            await _submit(setup, first, level)
            first = level
            await asyncio.sleep(args.settle)
            row = [setup.label, *await _measure(setup, args.window)]
            row += await _takeover(setup) if setup.replicas > 1 else ["", ""]
            setup.rows.append(row)
            print("  " + " | ".join(row), flush=True)
    finally:
        for proc in setup.procs:
            await proc.stop()
        await setup.gateway.stop()


async def run(args: argparse.Namespace) -> str:
    """Both setups side by side (or one after the other with `--one-at-a-time`); the table."""
    levels = args.levels or (QUICK_LEVELS if args.quick else LEVELS)
    with (
        tempfile.TemporaryDirectory(prefix="genrelay-scale-") as tmp_dir,
        fresh_schema(args.database) as pg_url,
    ):
        tmp = Path(tmp_dir)
        (tmp / "sqlite").mkdir()
        (tmp / "pg").mkdir()
        sqlite = Setup(
            "SQLite, 1 process",
            f"sqlite:///{tmp / 'sqlite' / 'bench.db'}",
            1,
            tmp / "sqlite",
            False,
        )
        replicas = Setup(
            f"PostgreSQL, {args.replicas} replicas",
            pg_url,
            args.replicas,
            tmp / "pg",
            not args.same_host,
        )
        if args.one_at_a_time:
            await _run_setup(sqlite, levels, args)
            await _run_setup(replicas, levels, args)
        else:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_run_setup(sqlite, levels, args))
                tg.create_task(_run_setup(replicas, levels, args))
    rows = [row for pair in zip(sqlite.rows, replicas.rows, strict=True) for row in pair]
    return table(HEADERS, rows)
