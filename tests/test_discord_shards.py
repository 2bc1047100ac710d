"""Discord sharding (DISCORD_SHARD_COUNT) end to end: real discord.py's AutoShardedClient in
DiscordAdapter against the fake Discord, which routes each server's events to its shard
((guild_id >> 22) % count) as Discord does; a real core on SQLite and the sandbox gateway.
One adapter running every shard, two adapters splitting them (as two replicas would), slash
commands registered once, deliveries through REST whatever shard a job came in on, and
what /readyz and /metrics say of the shards."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord import DiscordAdapter, ShardedGenrelayClient
from adapters.discord.shards import shard_for, shards_to_run
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState
from bot.supervisor import AdapterSupervisor
from bot.web import WebServer
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.discord_api import FakeDiscord, FakeInteraction
from tests.helpers import wait_delivered

TOKEN = "discord-bot-token-SECRET-0123456789"
APP_ID = 424242
GUILD_0, CHAN_0 = 1000, 2000  # (1000 >> 22) % 2 == 0: shard 0 of 2
GUILD_1, CHAN_1 = (1 << 22) | 7, 2100  # shard 1 of 2
USER = 5000
COMMANDS_PUT = f"/api/v10/applications/{APP_ID}/commands"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def restore_discord_py() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL in class attributes."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, app_id=APP_ID, bot_user_id=APP_ID) as fd:
        fd.add_user(USER, "alice")
        fd.add_guild(GUILD_0, "harbour", channels=[CHAN_0])
        fd.add_guild(GUILD_1, "lighthouse", channels=[CHAN_1])
        yield fd


@pytest.fixture
def sharded(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, fake: FakeDiscord
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aa_base_url": sandbox.base_url,
            "discord_bot_token": SecretStr(fake.token),
            "discord_api_base_url": fake.api_base,
            "discord_gateway_url": fake.gateway_url,
            "discord_shard_count": 2,
            "discord_sync_on_start": True,
        }
        return make_settings(**{**values, **overrides})

    return build


def adapter(core: Core, settings: Settings, **knobs: Any) -> DiscordAdapter:
    return DiscordAdapter(core, settings, guild_ready_timeout=0.05, identify_gap_s=0, **knobs)


class Recording(ShardedGenrelayClient):
    """The adapter's sharded client, noting the server of every interaction it gets."""

    def __init__(self, **options: Any) -> None:
        super().__init__(
            None,
            identify_gap_s=0,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            **options,
        )
        self.seen: list[int | None] = []

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.seen.append(interaction.guild_id)
        await super().on_interaction(interaction)


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.01)
        return value


async def delivered(core: Core, rec: FakeInteraction) -> Job:
    async def found() -> Job | None:
        jobs = await core.store.recent(100, platform="discord")
        return next((j for j in jobs if j.origin.context.get("token") == rec.token), None)

    job = await until(found)
    return await wait_delivered(core, job.id)


async def imagine(fake: FakeDiscord, guild: int, channel: int, prompt: str) -> FakeInteraction:
    return await fake.slash(
        "imagine", guild_id=guild, channel_id=channel, user_id=USER, options={"prompt": prompt}
    )


def assert_result_shown(fake: FakeDiscord, rec: FakeInteraction, job: Job) -> None:
    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    message = fake.original_response(rec.token)
    assert message is not None and fake.message_files(message), message


# -- the shards an adapter runs --------------------------------------------------------------


def test_the_shards_to_run_are_checked() -> None:
    assert shards_to_run(None, None) == ()
    assert shards_to_run(3, None) == (0, 1, 2)
    assert shards_to_run(3, [2, 0, 2]) == (0, 2)
    for count, ids in ((None, [0]), (2, []), (2, [2]), (2, [-1, 0])):
        with pytest.raises(ConfigError):
            shards_to_run(count, ids)
    assert [shard_for(g, 2) for g in (GUILD_0, GUILD_1, None)] == [0, 1, 0]
    assert shard_for(81384788765712384, 17) == 7  # Discord's own example numbers


async def test_an_adapter_refuses_a_shard_outside_the_count(
    sharded: Callable[..., Settings],
) -> None:
    settings = sharded()
    async with open_core(settings) as core:
        with pytest.raises(ConfigError, match=r"outside 0\.\.1"):
            DiscordAdapter(core, settings, shard_ids=[1, 2])
        with pytest.raises(ConfigError, match="DISCORD_SHARD_COUNT"):
            DiscordAdapter(core, sharded(discord_shard_count=None), shard_ids=[0])


# -- one adapter, every shard ----------------------------------------------------------------


async def test_one_adapter_runs_both_shards_and_serves_a_server_on_each(
    fake: FakeDiscord, sharded: Callable[..., Settings]
) -> None:
    settings = sharded()
    async with open_core(settings) as core, running(core):
        async with adapter(core, settings, shard_ids=[0, 1]) as discord_adapter:
            assert [p["shard"] for p in fake.identify_payloads] == [[0, 2], [1, 2]]
            assert discord_adapter.shard_ids == (0, 1)
            assert discord_adapter.connected
            assert discord_adapter.shards == {0: "ready", 1: "ready"}
            assert len(fake.find_requests("PUT", COMMANDS_PUT)) == 1  # once, not per shard

            harbour = await imagine(fake, GUILD_0, CHAN_0, "a harbour at dawn")
            beacon = await imagine(fake, GUILD_1, CHAN_1, "a lighthouse beam")
            for rec in (harbour, beacon):
                assert_result_shown(fake, rec, await delivered(core, rec))

            metrics = (await core.metrics.render()).decode()
            assert 'genrelay_discord_shard_up{shard="0"} 1.0' in metrics
            assert 'genrelay_discord_shard_up{shard="1"} 1.0' in metrics
        assert discord_adapter.shards == {0: "disconnected", 1: "disconnected"}
        assert "genrelay_discord_shard_up{" not in (await core.metrics.render()).decode()


# -- two adapters, one shard each (two replicas) ---------------------------------------------


async def test_two_adapters_split_the_shards_and_both_deliver(
    fake: FakeDiscord, sharded: Callable[..., Settings]
) -> None:
    """Two cores on one SQLite file, as two replicas. Only the first runs the tracker and
    notifier: the second only records what its shard brings, and the first delivers it
    through REST though its client never saw that server."""
    settings = sharded()
    shard_1, shard_0 = (
        Recording(shard_count=2, shard_ids=[1]),
        Recording(shard_count=2, shard_ids=[0]),
    )
    async with contextlib.AsyncExitStack() as stack:
        core_1 = await stack.enter_async_context(open_core(settings))
        second = await stack.enter_async_context(adapter(core_1, settings, client=shard_1))
        assert fake.find_requests("PUT", COMMANDS_PUT) == []  # shard 1 does not sync
        core_0 = await stack.enter_async_context(open_core(settings))
        first = await stack.enter_async_context(adapter(core_0, settings, client=shard_0))
        await stack.enter_async_context(running(core_0))
        assert len(fake.find_requests("PUT", COMMANDS_PUT)) == 1  # shard 0 did, once
        assert (first.shard_ids, second.shard_ids) == ((0,), (1,))
        assert [g.id for g in shard_0.guilds] == [GUILD_0]
        assert [g.id for g in shard_1.guilds] == [GUILD_1]

        harbour = await imagine(fake, GUILD_0, CHAN_0, "a harbour at dawn")
        beacon = await imagine(fake, GUILD_1, CHAN_1, "a lighthouse beam")
        beacon_again = await imagine(fake, GUILD_1, CHAN_1, "the beam in fog")
        for rec in (harbour, beacon, beacon_again):
            assert_result_shown(fake, rec, await delivered(core_0, rec))
        assert shard_0.seen == [GUILD_0]
        assert shard_1.seen == [GUILD_1, GUILD_1]
        assert first.connected and second.connected
    assert len(fake.find_requests("PUT", COMMANDS_PUT)) == 1


async def test_adapters_sharing_a_core_hand_the_sinks_back(
    fake: FakeDiscord, sharded: Callable[..., Settings]
) -> None:
    settings = sharded(discord_sync_on_start=False)
    async with open_core(settings) as core, running(core):
        async with adapter(core, settings, shard_ids=[0]) as first:
            async with adapter(core, settings, shard_ids=[1]) as second:
                assert core.notifier.sinks["discord"] is second.sink
            assert core.notifier.sinks["discord"] is first.sink  # the first delivers again
            rec = await imagine(fake, GUILD_0, CHAN_0, "a harbour at dawn")
            assert_result_shown(fake, rec, await delivered(core, rec))
        assert "discord" not in core.notifier.sinks
    assert fake.find_requests("PUT", COMMANDS_PUT) == []  # DISCORD_SYNC_ON_START is off


# -- unsharded, as before --------------------------------------------------------------------


async def test_unsharded_is_one_connection_without_a_shard(
    fake: FakeDiscord, sharded: Callable[..., Settings]
) -> None:
    for sync in (False, True):
        settings = sharded(discord_shard_count=None, discord_sync_on_start=sync)
        async with open_core(settings) as core, adapter(core, settings) as discord_adapter:
            assert discord_adapter.connected
            assert (discord_adapter.shard_ids, discord_adapter.shards) == ((), {})
            assert not isinstance(discord_adapter.client, ShardedGenrelayClient)
            assert sorted(g.id for g in discord_adapter.client.guilds) == [GUILD_0, GUILD_1]
    assert ["shard" in p for p in fake.identify_payloads] == [False, False]
    assert len(fake.find_requests("PUT", COMMANDS_PUT)) == 1  # only with the setting on


# -- /readyz and /metrics --------------------------------------------------------------------


async def test_readyz_and_metrics_list_the_shards(
    fake: FakeDiscord, sharded: Callable[..., Settings]
) -> None:
    settings = sharded(discord_sync_on_start=False)
    async with open_core(settings) as core:
        supervisor = AdapterSupervisor(
            lambda: adapter(core, settings, shard_ids=[1]), first_s=0.05, max_s=0.05
        )
        server = WebServer(
            host="127.0.0.1",
            port=0,
            media=core.media,
            health=core.store.ping,
            adapters=[supervisor],
            expected=["discord"],
            metrics=core.metrics,
        )
        async with server as web, httpx.AsyncClient(base_url=web.base_url) as http:
            assert (await http.get("/readyz")).json()["not_ready"] == {"discord": "connecting"}
            assert await supervisor.connect_once()
            try:
                resp = await http.get("/readyz")
                assert resp.status_code == 200, resp.text
                assert resp.json() == {
                    "ready": True,
                    "database": True,
                    "adapters": {"discord": True},
                    "held_elsewhere": {},
                    "not_ready": {},
                    "shards": {"discord": {"1": "ready"}},
                }
                metrics = (await http.get("/metrics")).text
                assert 'genrelay_discord_shard_up{shard="1"} 1.0' in metrics
                assert 'shard="0"' not in metrics  # another replica's
                await fake.drop_connections(code=4000)  # discord.py resumes
                await fake.wait_for(lambda: fake.resumes == 1)

                async def back() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await until(back)
            finally:
                await supervisor._stack.aclose()
            resp = await http.get("/readyz")
            assert resp.status_code == 503
            assert resp.json()["shards"] == {"discord": {"1": "disconnected"}}
            assert resp.json()["not_ready"] == {"discord": "shard 1 disconnected"}
