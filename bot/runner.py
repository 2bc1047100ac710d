"""The one owner of the background loops: the core's (tracker, notifier, sweeps, sessions) and
each chat adapter's, started together for a block of work and stopped together when it ends.
`genrelay run`, `generate` and `demo` and the tests all run them through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeVar

from bot.app import Core

__all__ = ["AdapterRun", "Runner"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class AdapterRun(Protocol):
    """A chat adapter as the runner drives it: an AdapterSupervisor (bot/supervisor.py),
    or a LeasedAdapter (bot/leases.py) that runs one while its lease is held here."""

    platform: str

    async def run(self) -> None: ...

    async def stop_intake(self) -> None: ...


class Runner:
    """`async with Runner(core, adapters) as runner:` runs the core's loops and each adapter
    (kept trying by its supervisor) until the block ends, then cancels them and waits for
    them. None of them ends by itself: `until(work)` awaits `work` and, should a loop end
    first, cancels `work` and raises the loop's error. `stop_gracefully` is `genrelay run`'s
    stop: no new work, and a grace for the work in flight."""

    def __init__(self, core: Core, adapters: Sequence[AdapterRun] = ()) -> None:
        self.core = core
        self.adapters = list(adapters)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [asyncio.create_task(self.core.run(), name="core")]
        self._tasks += [
            asyncio.create_task(a.run(), name=f"adapter-{a.platform}") for a in self.adapters
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        crashed = [t for t in self._tasks if t.done() and not t.cancelled() and t.exception()]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if crashed and exc is None:
            crashed[0].result()  # a loop that died unseen during the block: say so

    async def until(self, work: Awaitable[T]) -> T:
        """`work`'s result, while the loops run; a loop that ends first ends `work` and raises
        its error (ConfigError from an adapter, say), or RuntimeError when it had none."""
        job = asyncio.ensure_future(work)
        try:
            await asyncio.wait({job, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            job.cancel()
            raise
        if job.done():
            return job.result()
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        ended = next(t for t in self._tasks if t.done())
        ended.result()
        raise RuntimeError(f"the background loop {ended.get_name()} stopped")

    async def stop_gracefully(self, grace_s: float, *, cut: asyncio.Event) -> None:
        """Take no new work; let submits and uploads in flight finish (up to `grace_s`, or
        until `cut` is set: a second signal)."""
        log.info("stopping: no new work; up to %g s for the work in flight", grace_s)
        for adapter in self.adapters:
            try:
                await adapter.stop_intake()
            except Exception:  # it closes at the end anyway
                log.exception("stopping: %s did not stop taking requests", adapter.platform)
        drain = asyncio.create_task(self.core.stop(grace_s), name="drain")
        cutter = asyncio.create_task(cut.wait())
        await asyncio.wait({drain, cutter}, return_when=asyncio.FIRST_COMPLETED)
        cutter.cancel()
        if not drain.done():
            log.warning("a second signal: stopping without waiting")
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
