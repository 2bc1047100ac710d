"""bench.scale --replicas at a tiny level, so that it cannot rot: real processes (one on
SQLite, two replicas on a fresh PostgreSQL schema, the gateways), the table's rows and
columns asserted, not its timings."""

from __future__ import annotations

import argparse

from bench.scale_replicas import HEADERS, run
from tests.pg import pg_server_url


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


async def test_the_replicas_bench_prints_both_setups_and_a_takeover() -> None:
    args = argparse.Namespace(
        replicas=2,
        database=pg_server_url(),
        levels=(12,),
        quick=True,
        window=1.0,
        settle=0.2,
        same_host=True,  # takeover by pid: quick
        one_at_a_time=False,
    )
    lines = (await run(args)).splitlines()

    assert _cells(lines[0]) == HEADERS
    rows = [_cells(line) for line in lines[2:]]
    assert [r[0] for r in rows] == ["SQLite, 1 process", "PostgreSQL, 2 replicas"]
    single, replicas = rows
    assert single[1] == replicas[1] == "12"  # every job in flight, none ended
    assert single[2].endswith("%") and len(replicas[2].split(" / ")) == 2  # CPU per process
    assert float(single[4]) > 0 and float(replicas[4].split()[0]) > 0  # statements/s
    assert single[6] == "" and float(replicas[6]) >= 0  # only replicas have a takeover
    assert "(of " in replicas[7]
