"""Several adapters of one platform on one core (a replica holding several Discord shards'
leases): each adds its sink and takes out only its own, in any order."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from bot.config import Settings
from bot.main.wiring import build_adapters, open_core
from bot.sinks import SinkRegistry


def test_the_latest_sink_still_there_serves_whatever_order_they_leave() -> None:
    for order in itertools.permutations(["a", "b", "c"]):
        sinks: SinkRegistry[str] = SinkRegistry()
        for name in ("a", "b", "c"):
            sinks.add("discord", name)
        assert sinks["discord"] == "c"
        left = {"a", "b", "c"}
        for name in order:
            sinks.remove("discord", name)
            left.discard(name)
            newest = max(left) if left else None  # added a, b, c: the newest left serves
            assert sinks.get("discord") == newest, order
        assert "discord" not in sinks and list(sinks) == []


def test_removing_a_sink_never_added_changes_nothing() -> None:
    sinks: SinkRegistry[str] = SinkRegistry()
    sinks.add("telegram", "t")
    sinks.remove("telegram", "other")
    sinks.remove("discord", "d")
    assert dict(sinks) == {"telegram": "t"}


async def test_each_discord_shard_is_a_connection_under_its_own_lease(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(discord_bot_token=SecretStr("x.y.z"), discord_shard_count=3)
    async with open_core(settings) as core:
        leased: list[Any] = build_adapters(core, settings)
        assert [a.keeper.name for a in leased] == [f"discord:shard:{i}" for i in range(3)]
        assert [a.platform for a in leased] == [f"discord:shard:{i}" for i in range(3)]
        shard_ids = [a._next._next.shard_ids for a in leased]  # the adapters built first
        assert shard_ids == [(0,), (1,), (2,)]
