"""What the benchmarks share: a scaled clock, the sandbox gateway scripted per prompt, a sink
that times deliveries, settings without community limits, and a driver for the tracker."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.workload import RunSpec
from bot.app import Core
from bot.config import Settings
from bot.constants import TRACKER_BATCH_S, TRACKER_IDLE_WAKE_S
from bot.models import Job
from bot.ports import ResultFile
from bot.runner import Runner
from sandbox import SandboxGateway, SandboxTask, TaskFamily, TaskScript

__all__ = [
    "API_KEY",
    "DeliveryTimes",
    "ScaledClock",
    "ScriptedGateway",
    "bench_settings",
    "drive",
    "free_port",
    "peak_rss_mb",
    "rss_mb",
    "running_core",
    "running_notifier",
]

API_KEY = "aa_bench_key_0123456789"


class ScaledClock:
    """Benchmark seconds: `scale` of them pass per real second."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.scale

    def real(self, seconds: float) -> float:
        """Real seconds for `seconds` of benchmark time."""
        return seconds / self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.scale)


class ScriptedGateway(SandboxGateway):
    """The sandbox, each task behaving as the run named by its prompt says."""

    def __init__(self, runs: dict[str, RunSpec], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs = runs

    def _create_task(
        self, family: TaskFamily, model: str, prompt: str, **kwargs: Any
    ) -> SandboxTask:
        run = self.runs.get(prompt)
        if run is not None:
            self._scripts.appendleft(
                TaskScript(duration=run.duration, late_url_polls=0, progress_curve=run.curve)
            )
        return super()._create_task(family, model, prompt, **kwargs)


@dataclass
class DeliveryTimes:
    """A DeliverySink that notes when each upload to the chat starts (clock time)."""

    clock: ScaledClock
    platform: str = "bench"
    started: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    async def progress(self, job: Job) -> str | None:
        return None

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        self.started[job.id] = self.clock.now()
        if len(self.started) >= self.expected:
            self.done.set()


def bench_settings(tmp: Path, base_url: str, **overrides: Any) -> Settings:
    """Settings for a benchmark: its own store, no community limits, quiet logs."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp / 'bench.db'}",
        "data_dir": tmp / "data",
        "aa_base_url": base_url,
        "aa_api_key": SecretStr(API_KEY),
        "http_port": 0,
        "progress_interval_s": 3600.0,
        "tracker_concurrency": 256,
        "log_level": "WARNING",
    }
    unlimited = {
        "user_concurrent_jobs": 10**9,
        "chat_concurrent_jobs": 10**9,
        "user_daily_images": 10**9,
        "user_daily_videos": 10**9,
        "chat_daily_budget_usd": 0.0,
        "global_daily_budget_usd": 0.0,
    }
    values.update({k: v for k, v in unlimited.items() if k in Settings.model_fields})
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def drive(core: Core, clock: ScaledClock, stop: asyncio.Event) -> None:
    """The tracker's own loop (`Tracker.run`), its sleeps on the benchmark's clock: claim
    what is due, then sleep until the next due time (50 ms to 1 s of benchmark time)."""
    while not stop.is_set():
        started = await core.tracker.run_once()
        if started and len(core.tracker._inflight) < core.tracker.concurrency:
            continue
        due = await core.store.next_due(after=clock.now())
        delay = TRACKER_IDLE_WAKE_S if due is None else due - clock.now()
        delay = min(max(delay, TRACKER_BATCH_S), TRACKER_IDLE_WAKE_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(clock.real(delay)):
                await stop.wait()


def free_port() -> int:
    """A loopback port nobody listens on now (for a child process to take)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


@contextlib.asynccontextmanager
async def _running(loop: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    task = asyncio.create_task(loop)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def running_core(core: Core) -> contextlib.AbstractAsyncContextManager[Runner]:
    """The core's loops (tracker, notifier, sweeps) running for the block."""
    return Runner(core)


def running_notifier(core: Core) -> contextlib.AbstractAsyncContextManager[None]:
    """Only the notifier running for the block."""
    return _running(core.notifier.run())
