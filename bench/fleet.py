"""The processes of `bench.scale --replicas`: replicas (`python -m bench.replica`, driven
over their stdin and stdout) and the sandbox gateway with its control port, each measured
from outside: CPU time and resident memory from /proc/<pid>, status requests from the
gateway's own count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import httpx

from bench.common import API_KEY, free_port

__all__ = ["GatewayProcess", "ReplicaProcess", "cpu_seconds", "rss_mb_of"]

START_S = 60.0  # a process that has not said READY by then has failed
ROOT = Path(__file__).resolve().parents[1]  # where `python -m bench.*` finds the packages


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds the process `pid` has used (/proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb_of(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


async def _ready_line(proc: asyncio.subprocess.Process, log: Path) -> str:
    """The process's READY line (what follows READY), or RuntimeError with its log."""
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_S):
            while line := (await proc.stdout.readline()).decode():
                if line.startswith("READY"):
                    return line[len("READY") :].strip()
    except TimeoutError:
        pass
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"a benchmark process did not start:\n{tail}")


class ReplicaProcess:
    """One `python -m bench.replica`: `submit`, `stats`, `kill` (-9), `stop`."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc = proc
        self.name = name
        self.log = log
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, database: str, gateway: str, data: Path, host: str | None) -> Self:
        data.mkdir(parents=True, exist_ok=True)
        log = data / "replica.log"
        args = ["--database", database, "--gateway", gateway, "--data", str(data)]
        args += ["--host", host] if host else []
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.replica",
                *args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
            )
        try:
            name = await _ready_line(proc, log)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return cls(proc, name, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
            answer = (await self.proc.stdout.readline()).decode()
        if not answer:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"replica {self.name} stopped answering:\n{tail}")
        return answer

    async def submit(self, first: int, count: int) -> None:
        if count > 0:
            await self._ask(f"submit {first} {count}")

    async def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(await self._ask("stats"))
        return answer

    async def kill(self) -> None:
        """kill -9, and reap it."""
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        """End its input (it stops); killed if it takes longer than 20 s."""
        if self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(20.0):
                await self.proc.wait()
        except TimeoutError:
            await self.kill()


class GatewayProcess:
    """`python -m bench.gateway --control` in a process of its own; `polls()`: the status
    requests it has answered, over all its tasks."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, control: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.control = f"http://127.0.0.1:{control}/tasks"

    @classmethod
    async def start(cls, speed: float, log: Path) -> Self:
        port = free_port()
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.gateway",
                "--port",
                str(port),
                "--api-key",
                API_KEY,
                "--speed",
                str(speed),
                "--ready",
                "--control",
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
            )
        try:
            control = int(await _ready_line(proc, log))
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        return cls(proc, port, control)

    async def polls(self) -> int:
        async with httpx.AsyncClient(timeout=60.0) as http:
            resp = await http.get(self.control)
        tasks: dict[str, dict[str, Any]] = resp.json()
        return sum(int(t["polls"]) for t in tasks.values())

    async def stop(self) -> None:
        self.proc.terminate()
        await self.proc.wait()
