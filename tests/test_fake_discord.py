"""End-to-end checks that real discord.py works against tests/fakes/discord_api.py."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
import warnings
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import yarl

with warnings.catch_warnings():
    # discord.py imports the deprecated ``audioop`` (voice); pytest runs with -W error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.gateway import DiscordWebSocket
    from discord.http import Route
    from discord.utils import _ActiveDecompressionContext

try:
    from tests.fakes.discord_api import CREATE_PUBLIC_THREADS, PIN_MESSAGES, FakeDiscord
except ImportError:  # pytest's rootdir-less "prepend" import mode: tests/ itself is on sys.path
    from fakes.discord_api import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        CREATE_PUBLIC_THREADS,
        PIN_MESSAGES,
        FakeDiscord,
    )

TOKEN = "test-bot-token"
APP_ID = 424242
GUILD = 1000
CHAN = 2000
CHAN_DENIED = 2001
THREAD = 3000
USER = 5000


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


IN_PNG = _png(64, 32) + b"input-pixels" * 10
OUT_PNG = _png(8, 8) + b"output"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Bot:
    client: discord.Client
    tree: app_commands.CommandTree[discord.Client]
    seen: list[discord.Interaction[discord.Client]] = field(default_factory=list)
    synced: list[app_commands.AppCommand] = field(default_factory=list)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, app_id=APP_ID, bot_user_id=APP_ID, clock=clock) as fd:
        fd.add_user(USER, "alice")
        fd.add_guild(GUILD, "test guild", channels=[CHAN, CHAN_DENIED], threads=[(THREAD, CHAN)])
        fd.deny_send(CHAN_DENIED)
        yield fd


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    state = Bot(client, tree)

    @tree.command(name="imagine", description="Make an image", guild=discord.Object(GUILD))
    async def imagine(
        interaction: discord.Interaction[discord.Client],
        prompt: str,
        image1: discord.Attachment | None = None,
    ) -> None:
        state.seen.append(interaction)
        await interaction.response.defer(thinking=True)
        data = await image1.read() if image1 is not None else b""
        await interaction.edit_original_response(content=f"got {len(data)} bytes")
        out = discord.File(io.BytesIO(OUT_PNG), filename="out.png")
        await interaction.followup.send(file=out)

    async def style_choices(
        interaction: discord.Interaction[discord.Client], current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["watercolor", "wash", "oil"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @tree.command(name="style", description="Pick a style", guild=discord.Object(GUILD))
    @app_commands.autocomplete(name=style_choices)
    async def style(interaction: discord.Interaction[discord.Client], name: str) -> None:
        out = discord.File(io.BytesIO(b"swatch"), filename="swatch.txt")
        await interaction.response.send_message(f"style {name}", ephemeral=True, file=out)

    async def run() -> None:
        async with client:
            await client.start(TOKEN)

    task = asyncio.create_task(run())
    try:
        await fake.wait_connected(client=client)
        state.synced = await tree.sync(guild=discord.Object(GUILD))
        yield state
    finally:
        await client.close()
        await task
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


def _text_channel(bot: Bot, channel_id: int) -> discord.TextChannel:
    channel = bot.client.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_connects_with_compressed_gateway(fake: FakeDiscord, bot: Bot) -> None:
    assert bot.client.user is not None and bot.client.user.id == APP_ID
    assert bot.client.application_id == APP_ID
    guild = bot.client.get_guild(GUILD)
    assert guild is not None and guild.name == "test guild" and guild.me is not None
    assert {c.id for c in guild.text_channels} == {CHAN, CHAN_DENIED}
    assert guild.get_thread(THREAD) is not None
    query = fake.gateway_connections[0]
    assert query["v"] == "10" and query["encoding"] == "json"
    assert query["compress"] == _ActiveDecompressionContext.COMPRESSION_TYPE
    assert fake.identify_payloads[0]["token"] == TOKEN
    assert fake.identify_payloads[0]["intents"] == discord.Intents.default().value


async def test_slash_defer_edit_followup(fake: FakeDiscord, bot: Bot) -> None:
    # the bot fixture ran tree.sync(guild=...) once
    assert sorted(c.name for c in bot.synced) == ["imagine", "style"]
    (put,) = fake.find_requests("PUT", f"/applications/{APP_ID}/guilds/{GUILD}/commands")
    assert put.status == 200 and {c["name"] for c in put.json} == {"imagine", "style"}
    imagine = next(c for c in fake.registered_commands(GUILD) if c["name"] == "imagine")
    assert {o["name"]: o["type"] for o in imagine["options"]} == {"prompt": 3, "image1": 11}

    fake.fail_next("PATCH", f"/webhooks/{APP_ID}/", retry_after=0.05)
    rec = await fake.slash(
        "imagine",
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=USER,
        options={"prompt": "a cat"},
        attachments={"image1": ("in.png", IN_PNG, "image/png")},
    )
    followups = await fake.wait_for(lambda: fake.followups(rec.token))

    assert rec.payload["data"]["id"] == imagine["id"]
    assert rec.payload["data"]["guild_id"] == str(GUILD)
    assert [cb["type"] for cb in rec.callbacks] == [5]
    (callback,) = fake.find_requests("POST", f"/interactions/{rec.id}/{rec.token}/callback")
    assert callback.query["with_response"] == "1" and callback.status == 200

    original = fake.original_response(rec.token)
    assert original is not None
    assert original["content"] == f"got {len(IN_PNG)} bytes"
    assert original["flags"] & 128 == 0  # no longer "thinking"
    assert original["interaction_metadata"]["id"] == rec.id
    patches = fake.find_requests("PATCH", f"/webhooks/{APP_ID}/{rec.token}/messages/@original")
    assert [r.status for r in patches] == [429, 200]

    assert fake.message_files(followups[0]) == [("out.png", OUT_PNG, "image/png")]
    assert followups[0]["attachments"][0]["width"] == 8
    (post,) = fake.find_requests("POST", f"/webhooks/{APP_ID}/{rec.token}")
    assert post.query["wait"] == "1" and post.files[0][:2] == ("out.png", OUT_PNG)
    assert [m["id"] for m in fake.channel_messages(CHAN)] == [original["id"], followups[0]["id"]]

    downloads = fake.find_requests("GET", "/attachments/")
    assert len(downloads) == 1 and downloads[0].status == 200
    interaction = bot.seen[0]
    assert interaction.namespace.prompt == "a cat"
    assert interaction.namespace.image1.width == 64

    for r in fake.requests:
        if r.path.startswith(("/webhooks/", "/interactions/", "/attachments/")):
            assert "Authorization" not in r.headers, r
        else:
            assert r.headers["Authorization"] == f"Bot {TOKEN}", r


async def test_expired_token_and_channel_fallback(
    fake: FakeDiscord, bot: Bot, clock: Clock
) -> None:
    rec = await fake.slash(
        "imagine", guild_id=GUILD, channel_id=CHAN, user_id=USER, options={"prompt": "x"}
    )
    await fake.wait_for(lambda: fake.followups(rec.token))
    original = fake.original_response(rec.token)
    assert original is not None and original["content"] == "got 0 bytes"
    interaction = bot.seen[-1]

    clock.advance(16 * 60)
    with pytest.raises(discord.HTTPException) as edit_err:
        await interaction.edit_original_response(content="late")
    assert (edit_err.value.status, edit_err.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as followup_err:
        await interaction.followup.send("late")
    assert followup_err.value.code == 50027

    assert interaction.channel is not None
    await _text_channel(bot, CHAN).send("fallback")
    bot_posts = fake.channel_messages(CHAN, include_interactions=False)
    assert [m["content"] for m in bot_posts] == ["fallback"]


async def test_channel_send_nonce_permissions_and_ratelimit(fake: FakeDiscord, bot: Bot) -> None:
    channel = _text_channel(bot, CHAN)
    first = await channel.send("hello", nonce=12345)
    again = await channel.send("hello", nonce=12345)
    assert first.id == again.id
    assert [m["content"] for m in fake.channel_messages(CHAN)] == ["hello"]

    fake.fail_next("POST", f"/channels/{CHAN}/messages", retry_after=0.05, global_=True)
    reply = await channel.send(
        "reply", reference=first, file=discord.File(io.BytesIO(b"abc"), "a.txt")
    )
    assert reply.reference is not None and reply.reference.message_id == first.id
    assert reply.attachments[0].filename == "a.txt"
    assert await reply.attachments[0].read() == b"abc"
    posts = fake.find_requests("POST", f"/channels/{CHAN}/messages")
    assert [r.status for r in posts] == [200, 200, 429, 200]
    assert len(fake.channel_messages(CHAN)) == 2

    edited = await reply.edit(content="edited")
    assert edited.edited_at is not None and fake.message(reply.id)["content"] == "edited"  # type: ignore[index]
    await reply.delete()
    assert fake.message(reply.id) is None

    thread = channel.guild.get_thread(THREAD)
    assert thread is not None
    await thread.send("in thread")
    assert [m["content"] for m in fake.channel_messages(THREAD)] == ["in thread"]

    denied = _text_channel(bot, CHAN_DENIED)
    assert not denied.permissions_for(denied.guild.me).send_messages
    assert channel.permissions_for(channel.guild.me).send_messages
    with pytest.raises(discord.Forbidden) as err:
        await denied.send("nope")
    assert err.value.code == 50013
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.code == 50035


async def test_button_press_updates_message(fake: FakeDiscord, bot: Bot) -> None:
    class Again(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(label="Again", custom_id="again")
        async def again(
            self, interaction: discord.Interaction[discord.Client], button: discord.ui.Button[Again]
        ) -> None:
            await interaction.response.edit_message(content="pressed")

    msg = await _text_channel(bot, CHAN).send("pick", view=Again())
    stored = fake.message(msg.id)
    assert stored is not None and stored["components"][0]["components"][0]["custom_id"] == "again"

    rec = await fake.press(
        "again", message_id=msg.id, guild_id=GUILD, channel_id=CHAN, user_id=USER
    )
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 7
    original = fake.original_response(rec.token)
    assert original is not None and original["id"] == str(msg.id)
    assert original["content"] == "pressed" and original["edited_timestamp"] is not None


async def test_autocomplete(fake: FakeDiscord, bot: Bot) -> None:
    rec = await fake.autocomplete(
        "style", focused="name", value="wa", guild_id=GUILD, channel_id=CHAN, user_id=USER
    )
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 8
    assert rec.autocomplete_choices == [
        {"name": "watercolor", "value": "watercolor"},
        {"name": "wash", "value": "wash"},
    ]


async def test_resume_after_reconnect(fake: FakeDiscord, bot: Bot) -> None:
    await fake.reconnect_clients()
    await fake.wait_for(lambda: fake.resumes == 1)
    rec = await fake.slash(
        "imagine", guild_id=GUILD, channel_id=CHAN, user_id=USER, options={"prompt": "again"}
    )
    await fake.wait_for(lambda: fake.followups(rec.token))
    assert len(fake.gateway_connections) == 2


async def test_gateway_wire_format(fake: FakeDiscord) -> None:
    url = f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream"
    inflate = zlib.decompressobj()
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        frame = await ws.receive_bytes(timeout=2)
        assert frame.endswith(b"\x00\x00\xff\xff")
        hello = json.loads(inflate.decompress(frame))
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
        await ws.send_str(json.dumps({"op": 1, "d": None}))
        ack = json.loads(inflate.decompress(await ws.receive_bytes(timeout=2)))
        assert ack["op"] == 11
        await ws.send_str(json.dumps({"op": 2, "d": {"token": "wrong", "intents": 0}}))
        closed = await ws.receive(timeout=2)
        assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4004


async def test_immediate_ephemeral_response_with_file(fake: FakeDiscord, bot: Bot) -> None:
    rec = await fake.slash(
        "style", guild_id=GUILD, channel_id=CHAN, user_id=USER, options={"name": "oil"}
    )
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 4
    original = fake.original_response(rec.token)
    assert original is not None and original["content"] == "style oil"
    assert original["flags"] & 64  # ephemeral
    assert fake.message_files(original) == [("swatch.txt", b"swatch", "text/plain")]
    assert fake.channel_messages(CHAN) == []
    (callback,) = fake.find_requests("POST", f"/interactions/{rec.id}/")
    assert callback.json["type"] == 4 and callback.files[0][:2] == ("swatch.txt", b"swatch")


async def test_pins_need_pin_messages(fake: FakeDiscord, bot: Bot) -> None:
    channel = _text_channel(bot, CHAN)
    msg = await channel.send("the card")
    with pytest.raises(discord.Forbidden) as refused:
        await msg.pin()
    assert refused.value.code == 50013 and fake.pins(CHAN) == []

    fake.grant(GUILD, APP_ID, PIN_MESSAGES)
    await msg.pin()
    await msg.pin()  # pinning again changes nothing
    assert fake.pins(CHAN) == [str(msg.id)]
    stored = fake.message(msg.id)
    assert stored is not None and stored["pinned"] is True
    notice = fake.channel_messages(CHAN)[-1]
    assert notice["type"] == 6 and notice["message_reference"]["message_id"] == str(msg.id)
    pinned = [m async for m in channel.pins()]
    assert [m.id for m in pinned] == [msg.id]

    await msg.unpin()
    assert fake.pins(CHAN) == []
    with pytest.raises(discord.NotFound):
        await channel.get_partial_message(123).pin()


async def test_thread_from_a_message(fake: FakeDiscord, bot: Bot) -> None:
    channel = _text_channel(bot, CHAN)
    msg = await channel.send("the card")
    with pytest.raises(discord.HTTPException) as nameless:
        await msg.create_thread(name="")
    assert nameless.value.code == 50035

    thread = await msg.create_thread(name="foxes", auto_archive_duration=1440)
    assert thread.id == msg.id and thread.parent_id == CHAN and thread.name == "foxes"
    stored = fake.message(msg.id)
    assert stored is not None and stored["thread"]["id"] == str(msg.id)
    assert stored["flags"] & (1 << 5)  # HAS_THREAD
    await fake.wait_for(lambda: bot.client.get_channel(msg.id))  # THREAD_CREATE arrived
    assert fake.parent_of(msg.id) == CHAN and fake.channel_name(msg.id) == "foxes"
    posted = await thread.send("inside")
    assert [m["id"] for m in fake.channel_messages(msg.id)] == [str(posted.id)]

    with pytest.raises(discord.HTTPException) as again:
        await msg.create_thread(name="again")
    assert again.value.code == 160004
    with pytest.raises(discord.HTTPException) as nested:
        await posted.create_thread(name="nested")
    assert nested.value.code == 50024


async def test_threads_need_create_public_threads(clock: Clock) -> None:
    async with FakeDiscord(token=TOKEN, app_id=APP_ID, bot_user_id=APP_ID, clock=clock) as fd:
        fd.add_guild(GUILD, "g", channels=[CHAN], everyone_permissions=1 << 10 | 1 << 11)
        with fd.point_discord_py():
            client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            async with client:
                task = asyncio.create_task(client.start(TOKEN))
                await fd.wait_connected(client=client)
                channel = client.get_channel(CHAN)
                assert isinstance(channel, discord.TextChannel)
                msg = await channel.send("card")
                with pytest.raises(discord.Forbidden):
                    await msg.create_thread(name="t")
                fd.grant(GUILD, APP_ID, CREATE_PUBLIC_THREADS)
                assert (await msg.create_thread(name="t")).id == msg.id
                await client.close()
                await task


async def test_one_message_holds_ten_files_and_6000_embed_characters(
    fake: FakeDiscord, bot: Bot
) -> None:
    channel = _text_channel(bot, CHAN)
    files = [discord.File(io.BytesIO(OUT_PNG), filename=f"{i}.png") for i in range(10)]
    msg = await channel.send("ten", files=files)
    stored = fake.message(msg.id)
    assert stored is not None and [a["filename"] for a in stored["attachments"]] == [
        f"{i}.png" for i in range(10)
    ]
    eleven = [discord.File(io.BytesIO(OUT_PNG), filename=f"{i}.png") for i in range(11)]
    with pytest.raises(discord.HTTPException) as eleven_refused:
        await channel.send("eleven", files=eleven)
    assert eleven_refused.value.code == 50035
    embeds = [discord.Embed(description="x" * 700) for _ in range(9)]
    with pytest.raises(discord.HTTPException) as too_much:
        await channel.send(embeds=embeds)  # 6300 characters
    assert too_much.value.code == 50035
    alt = discord.File(io.BytesIO(OUT_PNG), filename="a.png", description="y" * 1025)
    with pytest.raises(discord.HTTPException):
        await channel.send(file=alt)
    with pytest.raises(discord.HTTPException):
        await channel.send("a nonce over 25 characters", nonce="n" * 26)


class _Prompt(discord.ui.Modal, title="Remix #3"):
    prompt: discord.ui.Label[_Prompt] = discord.ui.Label(
        text="Your prompt",
        component=discord.ui.TextInput(custom_id="prompt", max_length=20, required=True),
    )


async def test_a_modal_from_a_button_and_its_submit(fake: FakeDiscord, bot: Bot) -> None:
    submitted: list[tuple[str, int | None]] = []

    class Ask(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(label="Remix", custom_id="remix")
        async def remix(
            self, interaction: discord.Interaction[discord.Client], button: discord.ui.Button[Ask]
        ) -> None:
            modal = _Prompt(custom_id="remix-modal")

            async def on_submit(submit: discord.Interaction[discord.Client]) -> None:
                field_ = modal.prompt.component
                assert isinstance(field_, discord.ui.TextInput)
                message_id = submit.message.id if submit.message is not None else None
                submitted.append((field_.value, message_id))
                await submit.response.send_message("ok", ephemeral=True)

            modal.on_submit = on_submit  # type: ignore[method-assign]
            await interaction.response.send_modal(modal)

    msg = await _text_channel(bot, CHAN).send("result", view=Ask())
    rec = await fake.press(
        "remix", message_id=msg.id, guild_id=GUILD, channel_id=CHAN, user_id=USER
    )
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 9 and rec.modal is not None
    assert rec.modal["title"] == "Remix #3" and rec.modal["components"][0]["type"] == 18
    with pytest.raises(ValueError):
        await fake.submit_modal(rec, {"prompt": ""})  # required: the client would not send it
    with pytest.raises(ValueError):
        await fake.submit_modal(rec, {"prompt": "x" * 21})
    answer = await fake.submit_modal(rec, {"prompt": "a fox in a hat"})
    await fake.wait_for(lambda: answer.acknowledged)
    assert submitted == [("a fox in a hat", msg.id)]
    assert answer.type == 5 and answer.response_type == 4 and answer.user_id == USER


async def test_a_modal_discord_would_refuse(fake: FakeDiscord, bot: Bot) -> None:
    class TooLong(discord.ui.Modal, title="x" * 46):
        text = discord.ui.TextInput(label="Prompt")

    async def ask(interaction: discord.Interaction[discord.Client]) -> None:
        with pytest.raises(discord.HTTPException) as refused:
            await interaction.response.send_modal(TooLong())
        assert refused.value.code == 50035
        await interaction.response.send_message("no modal", ephemeral=True)

    bot.tree.add_command(
        app_commands.Command(name="ask", description="Ask", callback=ask),
        guild=discord.Object(GUILD),
    )
    await bot.tree.sync(guild=discord.Object(GUILD))
    rec = await fake.slash("ask", guild_id=GUILD, channel_id=CHAN, user_id=USER)
    await fake.wait_for(lambda: rec.acknowledged)
    assert rec.response_type == 4 and rec.modal is None


# -- sharding ----------------------------------------------------------------------------------

GUILD_ON_1 = (1 << 22) | 7  # (id >> 22) % 2 == 1: shard 1 of 2
CHAN_ON_1 = 2100


class _Sharded(discord.AutoShardedClient):
    """discord.py's sharded client, without its 5 s pause between two IDENTIFYs."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


async def _start(client: discord.Client) -> asyncio.Task[None]:
    task = asyncio.create_task(client.start(TOKEN))
    ready = asyncio.create_task(client.wait_until_ready())
    await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert ready.done() and not task.done()
    return task


async def _stop(*clients: tuple[discord.Client, asyncio.Task[None]]) -> None:
    for client, task in clients:
        await client.close()
        await task


@pytest.fixture
def pointed(fake: FakeDiscord) -> Iterator[None]:
    fake.add_guild(GUILD_ON_1, "second guild", channels=[CHAN_ON_1])
    with fake.point_discord_py():
        yield


def _sharded(**options: object) -> _Sharded:
    return _Sharded(intents=discord.Intents.default(), guild_ready_timeout=0.05, **options)  # type: ignore[arg-type]


@pytest.mark.usefixtures("pointed")
async def test_each_shard_gets_its_guilds_and_their_interactions(fake: FakeDiscord) -> None:
    seen: dict[int, list[int | None]] = {0: [], 1: []}
    clients = [_sharded(shard_count=2, shard_ids=[i]) for i in (0, 1)]
    for i, client in enumerate(clients):

        async def on_interaction(inter: discord.Interaction[Any], i: int = i) -> None:
            seen[i].append(inter.guild_id)

        client.event(on_interaction)
    tasks = [await _start(client) for client in clients]
    try:
        assert [p.get("shard") for p in fake.identify_payloads] == [[0, 2], [1, 2]]
        assert [g.id for g in clients[0].guilds] == [GUILD]
        assert [g.id for g in clients[1].guilds] == [GUILD_ON_1]
        assert fake.live_shards() == [(0, 2), (1, 2)]
        for guild, channel in ((GUILD, CHAN), (GUILD_ON_1, CHAN_ON_1), (GUILD_ON_1, CHAN_ON_1)):
            await fake.slash("imagine", guild_id=guild, channel_id=channel, user_id=USER)
        await fake.wait_for(lambda: len(seen[0]) + len(seen[1]) == 3)
        assert seen == {0: [GUILD], 1: [GUILD_ON_1, GUILD_ON_1]}
        assert await fake.dispatch("TYPING_START", {"channel_id": "9", "user_id": "5"}) == 1
    finally:
        await _stop(*zip(clients, tasks, strict=True))


@pytest.mark.usefixtures("pointed")
async def test_the_recommended_shard_count_and_a_shard_held_twice(fake: FakeDiscord) -> None:
    fake.recommended_shards = 2
    whole = _sharded()  # no shard_count: asks GET /gateway/bot
    whole_task = await _start(whole)
    twin = _sharded(shard_count=2, shard_ids=[1])
    twin_task = await _start(twin)
    try:
        assert fake.find_requests("GET", "/api/v10/gateway/bot")
        assert whole.shard_count == 2 and sorted(whole.shards) == [0, 1]
        assert sorted(g.id for g in whole.guilds) == [GUILD, GUILD_ON_1]
        # Discord accepts a second session on [1, 2]; both get the shard's events.
        assert fake.live_shards() == [(0, 2), (1, 2), (1, 2)]
        assert await fake.dispatch("GUILD_UPDATE", {"id": str(GUILD_ON_1)}) == 2
        assert await fake.dispatch("GUILD_UPDATE", {"id": str(GUILD)}) == 1
    finally:
        await _stop((twin, twin_task), (whole, whole_task))


async def test_an_invalid_shard_is_closed_with_4010(fake: FakeDiscord) -> None:
    url = f"{fake.gateway_url}?v=10&encoding=json"
    async with aiohttp.ClientSession() as session:
        for shard in ([2, 2], [0, 0], [-1, 2], [0]):
            async with session.ws_connect(url) as ws:
                await ws.receive(timeout=2)  # HELLO
                await ws.send_str(json.dumps({"op": 2, "d": {"token": TOKEN, "shard": shard}}))
                closed = await ws.receive(timeout=2)
                assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4010, shard
