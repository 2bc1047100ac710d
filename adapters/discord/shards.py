"""Discord's gateway shards, through discord.py's own `AutoShardedClient`: which shards an
adapter runs (DISCORD_SHARD_COUNT and the `shard_ids` a lease layer hands it), the client
that runs them, and the state of each shard for `connected`, /readyz and /metrics.

Discord routes a server's events to shard `(guild_id >> 22) % shard_count` and events
without a server (DMs) to shard 0; IDENTIFY carries `shard: [id, count]`. Everything else
(answers to interactions, deliveries, session cards) goes through REST, which no shard
owns, so any adapter can deliver any job whatever shard its interaction came in on.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.ui import GenrelayClient, Handler
from bot.errors import ConfigError

__all__ = [
    "IDENTIFY_GAP_S",
    "ShardState",
    "ShardedGenrelayClient",
    "shard_for",
    "shards_to_run",
]

# Discord takes one IDENTIFY per 5 s (per max_concurrency bucket); discord.py's default
# before_identify_hook waits this long before each shard after the first.
IDENTIFY_GAP_S = 5.0
# When this process may IDENTIFY next (time.monotonic()): one bucket for every client here,
# since a replica holding several shards' leases runs a client per shard.
_next_identify = [0.0]


class ShardState(StrEnum):
    CONNECTING = "connecting"  # not READY yet, or READY with its servers still arriving
    READY = "ready"  # READY and every server's GUILD_CREATE in (or RESUMED)
    DISCONNECTED = "disconnected"  # the connection dropped; discord.py reconnects it


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """The shard Discord sends a server's events on (no server: shard 0)."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def shards_to_run(shard_count: int | None, shard_ids: Sequence[int] | None) -> tuple[int, ...]:
    """The shards an adapter runs: `shard_ids` (each in 0..count-1, at least one), or every
    shard of `shard_count`; () when unsharded. Raises ConfigError."""
    if shard_count is None:
        if shard_ids is not None:
            raise ConfigError("shard_ids need DISCORD_SHARD_COUNT")
        return ()
    if shard_ids is None:
        return tuple(range(shard_count))
    ids = tuple(sorted(set(shard_ids)))
    if not ids:
        raise ConfigError("a sharded Discord adapter needs at least one shard to run")
    wrong = [i for i in ids if not 0 <= i < shard_count]
    if wrong:
        last = shard_count - 1
        raise ConfigError(f"shard ids {wrong} are outside 0..{last} (DISCORD_SHARD_COUNT)")
    return ids


class ShardedGenrelayClient(GenrelayClient, discord.AutoShardedClient):
    """A `GenrelayClient` on discord.py's `AutoShardedClient`: `shard_count` and `shard_ids`
    are its own options. Keeps each shard's state from discord.py's shard events, and waits
    `identify_gap_s` between two IDENTIFYs (Discord's limit; tests pass 0)."""

    def __init__(
        self, handler: Handler | None, *, identify_gap_s: float = IDENTIFY_GAP_S, **options: Any
    ) -> None:
        super().__init__(handler, **options)
        self.identify_gap_s = identify_gap_s
        ids = self.shard_ids if self.shard_ids is not None else range(self.shard_count or 0)
        self.shard_states: dict[int, ShardState] = dict.fromkeys(ids, ShardState.CONNECTING)

    @property
    def all_ready(self) -> bool:
        """Every shard of this client READY (and its servers in)."""
        states = self.shard_states
        return bool(states) and all(s is ShardState.READY for s in states.values())

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """IDENTIFY at most once per `identify_gap_s` in this process, whichever client of
        it asks: the slot is taken before waiting, so clients asking at once queue up."""
        now = time.monotonic()
        wait = max(_next_identify[0] - now, 0.0)
        _next_identify[0] = max(_next_identify[0], now) + self.identify_gap_s
        if wait > 0:
            await asyncio.sleep(wait)

    async def on_shard_connect(self, shard_id: int) -> None:
        self.shard_states[shard_id] = ShardState.CONNECTING  # READY; its servers arriving

    async def on_shard_ready(self, shard_id: int) -> None:
        self.shard_states[shard_id] = ShardState.READY

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.shard_states[shard_id] = ShardState.READY

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.shard_states[shard_id] = ShardState.DISCONNECTED
