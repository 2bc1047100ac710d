"""Replicas, with real processes: several `genrelay run` on one SQLite file, the fake Bot
API (which answers 409 to two overlapping long polls, as Telegram does) and the sandbox
gateway. One replica at a time holds Telegram; killed (-9), another takes over; stopped
(SIGTERM), it hands Telegram over at once. /readyz and /metrics say who holds what."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import httpx

from sandbox import SandboxGateway
from storage.sqlite import SqliteJobStore
from tests.crashes import CRASH_WAIT_S, TOKEN, RunProcess, ask, run_env, seen, settle
from tests.fakes.telegram_api import FakeTelegram

LISTENING = re.compile(r"HTTP server listening on (http://\S+)")
KILLED_TAKEOVER_S = 15.0  # issue 15: a killed holder's connection is taken over within this
STOPPED_TAKEOVER_S = 5.0  # a stopped one hands it over at once (~2 s; its lease lasts 10 s)


async def start(tmp_path: Path, env: dict[str, str], name: str) -> tuple[RunProcess, str]:
    """A `genrelay run` with its own data directory; its HTTP base URL, once it listens."""
    data = {"DATA_DIR": str(tmp_path / f"data-{name}")}
    proc = await RunProcess.start({**env, **data}, tmp_path / f"{name}.log")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CRASH_WAIT_S
    while not (found := LISTENING.search(proc.log_path.read_text(errors="replace"))):
        assert proc.proc.returncode is None and loop.time() < deadline, proc.log_tail()
        await asyncio.sleep(0.05)
    return proc, found.group(1)


def replica_name(proc: RunProcess) -> str:
    return f"{socket.gethostname()}:{proc.pid}"


async def readyz(base: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(base + "/readyz")
    return resp.status_code, resp.json()


async def held_elsewhere(base: str, holder: str) -> dict[str, Any]:
    """/readyz of a replica once it sees Telegram held by `holder` (ready all the same)."""
    async with asyncio.timeout(CRASH_WAIT_S):
        while True:
            status, body = await readyz(base)
            if body.get("held_elsewhere") == {"telegram": f"held by {holder}"}:
                assert status == 200, body
                return body
            await asyncio.sleep(0.05)


async def takeover(proc: RunProcess, since: float) -> float:
    """Seconds from `since` until `proc` connected to Telegram."""
    await proc.wait_ready(CRASH_WAIT_S)
    return asyncio.get_running_loop().time() - since


async def test_one_replica_holds_telegram_and_another_takes_over(
    tmp_path: Path, sandbox: SandboxGateway
) -> None:
    async with FakeTelegram(token=TOKEN) as fake:
        env = run_env(tmp_path, sandbox, fake)
        loop = asyncio.get_running_loop()
        first, first_url = await start(tmp_path, env, "first")
        second, second_url = await start(tmp_path, env, "second")
        third: RunProcess | None = None
        try:
            await first.wait_ready(CRASH_WAIT_S)
            body = await held_elsewhere(second_url, replica_name(first))
            assert body["replica"] == replica_name(second)
            assert body["leases"]["telegram"]["holder"] == replica_name(first)
            assert {replica_name(first), replica_name(second)} <= set(body["replicas"])
            status, mine = await readyz(first_url)
            assert status == 200 and mine["adapters"] == {"telegram": True}
            assert mine["leases"]["telegram"]["here"] is True
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(second_url + "/metrics")).text
            held = f'genrelay_lease_held{{lease="telegram",replica="{replica_name(first)}"}} 1.0'
            assert held in metrics
            assert "genrelay_replicas 2.0" in metrics
            assert f'genrelay_replica{{replica="{replica_name(second)}"}} 1.0' in metrics

            asked = [ask(fake, 9001, "/imagine", "a lighthouse at dawn")]
            async with SqliteJobStore(tmp_path / "genrelay.db") as store:
                problems = await settle(fake, sandbox, store, asked, crashes=0)
                assert not problems, "\n".join(problems) + "\n" + seen(fake, sandbox, asked)

                # The holder is killed: the other takes Telegram over and serves.
                killed_at = loop.time()
                os.kill(first.pid, signal.SIGKILL)
                await first.proc.wait()
                assert await takeover(second, killed_at) < KILLED_TAKEOVER_S
                asked.append(ask(fake, 9002, "/imagine", "a harbour at night"))
                problems = await settle(fake, sandbox, store, asked, crashes=1)
                assert not problems, "\n".join(problems) + "\n" + seen(fake, sandbox, asked)

                # A third replica waits; the holder is stopped: it hands Telegram over.
                third, third_url = await start(tmp_path, env, "third")
                await held_elsewhere(third_url, replica_name(second))
                stopped_at = loop.time()
                second.proc.send_signal(signal.SIGTERM)
                assert await takeover(third, stopped_at) < STOPPED_TAKEOVER_S
                assert await second.stop() == 0
                asked.append(ask(fake, 9003, "/imagine", "a forest in fog"))
                problems = await settle(fake, sandbox, store, asked, crashes=1)
                assert not problems, "\n".join(problems) + "\n" + seen(fake, sandbox, asked)
            assert fake.poll_conflicts == 0  # never two long polls at once
            assert len(sandbox.create_calls()) == 3
        finally:
            for proc in (first, second, third):
                if proc is not None:
                    await proc.stop()
