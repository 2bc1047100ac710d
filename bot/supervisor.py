"""Chat adapters kept trying at start: a platform that does not answer (network, 5xx, no
READY in time) is tried again with capped backoff while the rest of the service runs and
/readyz says what is missing; a configuration error ends the service (exit 2)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

from bot.errors import ConfigError, PlatformUnavailable
from bot.ports import ChatAdapter, Sharded

__all__ = ["AdapterSupervisor"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class AdapterSupervisor:
    """Starts one chat adapter and keeps it until cancelled; leaving disconnects it.

    `make` builds a fresh adapter for each attempt (no I/O in its `__init__`), so a failed
    start leaves nothing half-open behind. `connect_once` is one attempt; `run` drives it
    with backoff from `first_s`, doubling up to `max_s`."""

    def __init__(
        self,
        make: Callable[[], ChatAdapter],
        *,
        first_s: float,
        max_s: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._make = make
        self._next = make()
        self.platform = self._next.platform
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self._sleep = sleep
        self._stack = AsyncExitStack()
        self.adapter: ChatAdapter | None = None  # once connected
        self.attempts = 0
        self.problem: str | None = None  # why the last attempt did not connect

    @property
    def connected(self) -> bool:
        return self.adapter is not None and self.adapter.connected

    @property
    def elsewhere(self) -> str | None:
        """Another replica holding the connection: never (see bot/leases.py for that)."""
        return None

    @property
    def shards(self) -> Mapping[int, str]:
        """The shards the connected adapter runs and their states ({}: unsharded, or not
        connected)."""
        adapter = self.adapter
        return adapter.shards if isinstance(adapter, Sharded) else {}

    async def connect_once(self) -> bool:
        """One attempt: True once connected; False when the platform did not answer
        (`problem` says why). Raises ConfigError: trying again cannot help."""
        adapter = self._next
        self.attempts += 1
        try:
            self.adapter = await self._stack.enter_async_context(adapter)
        except ConfigError:
            raise
        except PlatformUnavailable as exc:
            self.problem = str(exc)
        except Exception as exc:  # not foreseen: kept trying; its words may hold anything
            log.debug("%s: start failed", self.platform, exc_info=True)
            self.problem = f"{type(exc).__name__} (its traceback is logged at DEBUG)"
        else:
            self.problem = None
            return True
        self._next = self._make()
        return False

    async def stop_intake(self) -> None:
        """The service is stopping: the adapter takes no new requests (if it is connected;
        deliveries still go out through it until it is left)."""
        if self.adapter is not None:
            await self.adapter.stop_intake()

    async def run(self) -> None:
        """Connect, trying again until it works, then hold the connection until cancelled."""
        async with self._stack:
            delay = self.first_s
            while not await self.connect_once():
                log.warning(
                    "%s: not connected (attempt %d): %s; trying again in %g s",
                    self.platform,
                    self.attempts,
                    self.problem,
                    delay,
                )
                await self._sleep(delay)
                delay = min(delay * 2, self.max_s)
            await asyncio.Event().wait()  # connected: until the service stops
