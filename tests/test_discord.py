"""The Discord adapter end to end: real discord.py inside DiscordAdapter against the fake
Discord (REST + gateway) on loopback, a real core on SQLite, and the sandbox as the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from PIL import Image
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord import DiscordAdapter, sync_commands
from adapters.discord import generate as discord_generate
from adapters.discord.texts import (
    HELP_TEXT,
    INTERNAL_ERROR_TEXT,
    OOPS_TEXT,
    attachment_unreachable_text,
    link_note,
    missing_permissions_text,
    not_an_image_text,
    ready_text,
)
from adapters.discord.ui import GenrelayClient, JobButton
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError, DeliveryError, PermanentDeliveryError, PlatformUnavailable
from bot.main.wiring import open_core
from bot.messages import UNREADABLE_IMAGE, failure_text, human_size, model_line, progress_text
from bot.models import Delivery, Job, JobState, Kind
from sandbox import SandboxGateway
from tests.conftest import running
from tests.fakes.discord_api import FakeDiscord, FakeInteraction, Recorded
from tests.helpers import corrupt_jpeg, jpeg_bytes, wait_delivered

TOKEN = "discord-bot-token-SECRET-0123456789"
APP_ID = 424242
GUILD = 1000
CHAN = 2000
CHAN_DENIED = 2001
THREAD = 3000
USER = 5000
OTHER = 5001
EPHEMERAL = 1 << 6
T = TypeVar("T")


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 30)).save(out, "PNG")
    return out.getvalue()


# Real images: attachments are downloaded and must decode before a job is recorded.
PNG = _png(64, 32)
JPEG = jpeg_bytes()
PHOTO = {"image1": ("fox.png", PNG, "image/png")}


class Clock:
    """The fake Discord's clock: real time plus an offset a test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(autouse=True)
def restore_discord_py() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL in class attributes."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, app_id=APP_ID, bot_user_id=APP_ID, clock=clock) as fd:
        fd.add_user(USER, "alice")
        fd.add_user(OTHER, "bob")
        fd.add_guild(GUILD, "studio", channels=[CHAN, CHAN_DENIED], threads=[(THREAD, CHAN)])
        fd.deny_send(CHAN_DENIED)
        yield fd


@pytest.fixture
def dsettings(
    make_settings: Callable[..., Settings], sandbox: SandboxGateway, fake: FakeDiscord
) -> Settings:
    return make_settings(
        aa_base_url=sandbox.base_url,
        discord_bot_token=SecretStr(fake.token),
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings, **knobs: Any) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    """One process, started like `genrelay run`: the adapter connects (and registers its
    sink) before the tracker and notifier start."""
    async with (
        open_core(settings) as core,
        DiscordAdapter(core, settings, guild_ready_timeout=0.05, **knobs) as adapter,
        running(core),
    ):
        yield core, adapter


@pytest.fixture
async def app(dsettings: Settings) -> AsyncIterator[tuple[Core, DiscordAdapter]]:
    async with serving(dsettings) as pair:
        yield pair


# -- helpers -------------------------------------------------------------------------------


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.01)
        return value


async def jobs_for(core: Core, rec: FakeInteraction) -> list[Job]:
    jobs = await core.store.recent(100, platform="discord")
    return [j for j in jobs if j.origin.context.get("token") == rec.token]


async def job_for(core: Core, rec: FakeInteraction) -> Job:
    async def found() -> Job | None:
        jobs = await jobs_for(core, rec)
        return jobs[0] if jobs else None

    return await until(found)


async def delivered(core: Core, rec: FakeInteraction) -> Job:
    job = await job_for(core, rec)
    return await wait_delivered(core, job.id)


async def with_task(core: Core, job_id: str) -> Job | None:
    """The job once the gateway gave it a task id."""
    job = await core.store.get(job_id)
    return job if job is not None and job.upstream_task_id else None


async def imagine(fake: FakeDiscord, **options: Any) -> FakeInteraction:
    attachments = options.pop("attachments", None)
    channel = options.pop("channel", CHAN)
    return await fake.slash(
        "imagine",
        guild_id=GUILD,
        channel_id=channel,
        user_id=USER,
        options=options,
        attachments=attachments,
    )


def labels(message: dict[str, Any]) -> list[str]:
    return [c["label"] for row in message["components"] for c in row["components"]]


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


def edits(fake: FakeDiscord, rec: FakeInteraction) -> list[Recorded]:
    return fake.find_requests("PATCH", f"/webhooks/{APP_ID}/{rec.token}/messages/")


def original(fake: FakeDiscord, rec: FakeInteraction) -> dict[str, Any]:
    message = fake.original_response(rec.token)
    assert message is not None
    return message


async def refusal(fake: FakeDiscord, rec: FakeInteraction) -> str:
    """The ephemeral answer to an interaction (a direct response or a followup)."""
    await fake.wait_for(lambda: rec.acknowledged)
    if rec.response_type == 4:
        assert rec.callbacks[0]["data"]["flags"] & EPHEMERAL
        return str(rec.callbacks[0]["data"]["content"])
    (followup,) = await fake.wait_for(lambda: fake.followups(rec.token))
    assert followup["flags"] & EPHEMERAL
    return str(followup["content"])


async def refused_first(fake: FakeDiscord, rec: FakeInteraction) -> str:
    """A refusal that was the interaction's first and only callback: a private message
    (type 4, ephemeral), never a public "thinking…" defer (type 5) taken back later."""
    await fake.wait_for(lambda: rec.acknowledged)
    assert [cb["type"] for cb in rec.callbacks] == [4]
    assert rec.callbacks[0]["data"]["flags"] & EPHEMERAL
    assert fake.followups(rec.token) == []
    return str(rec.callbacks[0]["data"]["content"])


# -- slash commands ------------------------------------------------------------------------


async def test_imagine_shows_progress_then_the_image_with_buttons(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    app: tuple[Core, DiscordAdapter],
    log_records: pytest.LogCaptureFixture,
) -> None:
    core, adapter = app
    assert adapter.connected
    rec = await imagine(fake, prompt="a red fox in fresh snow")
    job = await delivered(core, rec)

    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    assert [cb["type"] for cb in rec.callbacks] == [5]  # deferred, "thinking"
    message = original(fake, rec)
    # Recorded before the "thinking…" (a replica killed in between leaves a job that goes
    # on), whose id is attached as the status message's once it is there.
    assert job.origin.message_id is None and job.status_message_id == message["id"]
    assert message["content"] == ""
    assert fake.message_files(message) == [
        (
            f"{job.id}-0.png",
            (core.settings.data_dir / "results" / f"{job.id}-0.png").read_bytes(),
            "image/png",
        )
    ]
    (embed,) = message["embeds"]
    assert embed["title"] == "Nano Banana"
    assert embed["description"] == "“a red fox in fresh snow”"
    assert embed["footer"]["text"] == "Asked by alice"
    assert embed["image"]["url"] == f"attachment://{job.id}-0.png"
    assert labels(message) == ["Reroll", "Animate", "4K"]
    assert custom_ids(message) == [f"genrelay:{a}:{job.id}" for a in ("rr", "an", "4k")]
    assert [m["id"] for m in fake.channel_messages(CHAN)] == [message["id"]]

    progress = [r.json["content"] for r in edits(fake, rec) if not r.files]
    queued = dataclasses.replace(job, state=JobState.RECEIVED)
    assert progress[0] == progress_text(queued, core.catalog) == "⏳ Queued on Nano Banana…"
    assert all(a != b for a, b in itertools.pairwise(progress))

    (call,) = sandbox.create_calls()
    assert call.json["model"] == "nanobanana" and "images" not in call.json
    assert job.origin.user_id == str(USER) and job.origin.guild_id == str(GUILD)
    assert job.origin.context["upload_limit"] == 10 * 1024 * 1024
    assert TOKEN not in log_records.text


async def test_imagine_passes_attachment_urls_to_the_gateway(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    rec = await imagine(
        fake,
        prompt="these two, as a watercolor",
        model="nanobanana_pro",
        aspect_ratio="1:1",
        quality="4k",
        attachments={
            "image1": ("fox.png", PNG, "image/png"),
            "image2": ("cat.jpg", JPEG, "image/jpeg"),
        },
    )
    job = await delivered(core, rec)

    resolved = rec.payload["data"]["resolved"]["attachments"]
    urls = [a["url"] for a in resolved.values()]
    assert [i.ref for i in job.images] == urls
    assert [(i.mime, i.size, i.filename) for i in job.images] == [
        ("image/png", len(PNG), "fox.png"),
        ("image/jpeg", len(JPEG), "cat.jpg"),
    ]
    (call,) = sandbox.create_calls()
    assert call.json["images"] == urls
    assert (call.json["model"], call.json["aspect_ratio"]) == ("nanobanana_pro", "1:1")
    # Each was downloaded once, to check it decodes; its URL is what went upstream.
    assert len(fake.find_requests("GET", "/attachments/")) == 2
    assert labels(original(fake, rec)) == ["Reroll", "Animate"]  # already 4K


async def test_video_with_an_image_uploads_an_mp4(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    rec = await fake.slash(
        "video",
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=USER,
        options={"prompt": "the fox starts to run", "aspect_ratio": "9:16"},
        attachments={"image1": ("fox.png", PNG, "image/png")},
    )
    job = await delivered(core, rec)

    assert (job.kind, job.model, job.aspect_ratio) == (Kind.VIDEO, "veo_fast", "9:16")
    (url,) = [a["url"] for a in rec.payload["data"]["resolved"]["attachments"].values()]
    (call,) = sandbox.create_calls()
    assert call.json["model"] == "veo_fast" and url in call.body.decode()
    message = original(fake, rec)
    ((name, data, ctype),) = fake.message_files(message)
    assert (name, ctype) == (f"{job.id}-0.mp4", "video/mp4") and data[4:8] == b"ftyp"
    (embed,) = message["embeds"]
    assert embed["title"] == "Veo 3.1 Fast" and "image" not in embed
    assert labels(message) == ["Reroll"]


@pytest.mark.parametrize(
    ("command", "options", "attachments", "answer", "recorded"),
    [
        (
            "imagine",
            {"prompt": "a fox", "model": "dalle"},
            {},
            "I don't know the model “dalle”.",
            True,
        ),
        (
            "video",
            {"prompt": "a fox runs", "model": "sora_fast"},
            {"image1": ("a.png", PNG, "image/png"), "image2": ("b.png", PNG, "image/png")},
            "Sora Fast takes at most 1 reference image; you sent 2. "
            "Send fewer, or pick another model.",
            True,
        ),
        (
            "video",
            {"prompt": "hi", "model": "sora_fast"},
            {},
            "That prompt is 2 characters; Sora Fast needs at least 3.",
            True,
        ),
        (
            "imagine",
            {"prompt": "   "},
            {},
            "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”.",
            True,
        ),
        (
            "imagine",
            {"prompt": "a fox", "model": "nanobanana", "aspect_ratio": "2:1"},
            {},
            "Nano Banana takes aspect ratio 1:1, 16:9, 9:16, 4:3 or 3:4, not 2:1.",
            True,
        ),
        (
            "imagine",
            {"prompt": "a fox"},
            {"image1": ("notes.txt", b"just text", "text/plain")},
            not_an_image_text("notes.txt"),
            False,
        ),
    ],
)
async def test_input_errors_are_answered_ephemerally_and_nothing_goes_upstream(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    app: tuple[Core, DiscordAdapter],
    command: str,
    options: dict[str, Any],
    attachments: dict[str, tuple[str, bytes, str]],
    answer: str,
    recorded: bool,
) -> None:
    core, _ = app
    rec = await fake.slash(
        command,
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=USER,
        options=options,
        attachments=attachments,
    )
    assert (await refusal(fake, rec)).startswith(answer)
    assert rec.response_type == 4  # answered directly: no public "thinking" message
    if recorded:
        job = await job_for(core, rec)
        assert job.state is JobState.REJECTED and job.delivery is Delivery.NONE
    assert await jobs_for(core, rec) == ([job] if recorded else [])
    assert sandbox.requests == []
    assert fake.channel_messages(CHAN) == []


async def test_an_image_over_the_size_limit_is_refused(
    fake: FakeDiscord, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        aa_base_url=sandbox.base_url,
        discord_bot_token=SecretStr(fake.token),
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        max_reference_bytes=2048,
    )
    big = PNG + b"\0" * 4096
    async with serving(settings) as (core, _):
        rec = await imagine(
            fake, prompt="a fox", attachments={"image1": ("big.png", big, "image/png")}
        )
        assert await refusal(fake, rec) == core.media.too_large(len(big)).message
        assert "That image is 4 KB; the limit is 2 KB." in core.media.too_large(len(big)).message
    assert sandbox.requests == []


async def test_an_attachment_that_does_not_decode_is_refused_and_costs_nothing(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    """JPEG magic bytes and a real header, then cut off: downloaded after the defer, so the
    "thinking…" message itself becomes the refusal (never deleted for a followup)."""
    core, _ = app
    rec = await imagine(
        fake,
        prompt="this one as a watercolor",
        attachments={
            "image1": ("fine.png", PNG, "image/png"),
            "image2": ("cut.jpg", corrupt_jpeg(), "image/jpeg"),
        },
    )
    job = await job_for(core, rec)
    assert job.state is JobState.REJECTED and job.delivery is Delivery.NONE
    assert job.error_message == UNREADABLE_IMAGE and job.charged_usd == 0
    await fake.wait_for(lambda: edits(fake, rec))
    assert [cb["type"] for cb in rec.callbacks] == [5]  # the public defer, then the edit
    assert original(fake, rec)["content"] == UNREADABLE_IMAGE
    assert fake.followups(rec.token) == []
    assert fake.find_requests("DELETE", f"/webhooks/{APP_ID}/{rec.token}/") == []
    await fake.wait_for(lambda: len(fake.find_requests("GET", "/attachments/")) == 2)
    await core.tracker.drain()
    assert sandbox.create_calls() == [] and sandbox.requests == []
    assert await jobs_for(core, rec) == [job]


async def test_an_attachment_discord_will_not_serve_is_refused(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    fake.fail_next("GET", "/attachments/", status=404)
    rec = await imagine(
        fake, prompt="a fox", attachments={"image1": ("fox.jpg", JPEG, "image/jpeg")}
    )
    job = await job_for(core, rec)
    assert job.state is JobState.REJECTED
    await fake.wait_for(lambda: edits(fake, rec))
    assert original(fake, rec)["content"] == attachment_unreachable_text("fox.jpg")
    assert original(fake, rec)["content"] == (
        "I couldn't download “fox.jpg” from Discord. Please attach it again."
    )
    assert sandbox.requests == []


async def test_missing_send_permission_is_said_at_submit_time(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    rec = await imagine(fake, prompt="a red fox", channel=CHAN_DENIED)
    text = await refusal(fake, rec)
    assert text == missing_permissions_text(["Send Messages"])
    assert text == (
        "I can't post results in this channel: I'm missing Send Messages. I didn't start "
        "anything. Ask a server admin to give me this permission here, or use me in another "
        "channel."
    )
    assert missing_permissions_text(["Send Messages", "Attach Files", "Embed Links"]) == (
        "I can't post results in this channel: I'm missing Send Messages, Attach Files and "
        "Embed Links. I didn't start anything. Ask a server admin to give me these "
        "permissions here, or use me in another channel."
    )
    assert await jobs_for(core, rec) == []
    assert sandbox.requests == [] and fake.channel_messages(CHAN_DENIED) == []


async def test_a_command_in_a_thread_is_answered_in_the_thread(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    rec = await imagine(fake, prompt="a fox in a thread", channel=THREAD)
    job = await delivered(core, rec)

    assert (job.origin.chat_id, job.origin.thread_id) == (str(THREAD), str(THREAD))
    message = original(fake, rec)
    assert [m["id"] for m in fake.channel_messages(THREAD)] == [message["id"]]
    assert fake.message_files(message) and fake.channel_messages(CHAN) == []


@pytest.mark.parametrize("prompt", ["[fail] a fox", "[refund] a fox"])
async def test_a_failed_job_says_what_went_wrong(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter], prompt: str
) -> None:
    core, _ = app
    rec = await imagine(fake, prompt=prompt)
    job = await delivered(core, rec)

    assert job.state in (JobState.FAILED, JobState.REFUNDED)
    message = original(fake, rec)
    assert message["content"] == failure_text(job, core.catalog)
    assert "charged" in message["content"] or "refunded" in message["content"]
    assert message["embeds"] == [] and fake.message_files(message) == []
    assert labels(message) == ["Reroll"]


async def test_models_and_help_are_ephemeral(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, adapter = app
    models = await fake.slash("models", guild_id=GUILD, channel_id=CHAN, user_id=USER)
    text = await refusal(fake, models)
    assert text == adapter.models_text()
    assert text.startswith("**Image models · /imagine**\n")
    assert "**Video models · /video**" in text
    for spec in core.catalog:
        assert model_line(spec) in text

    help_ = await fake.slash("help", guild_id=GUILD, channel_id=CHAN, user_id=USER)
    assert await refusal(fake, help_) == HELP_TEXT
    assert fake.channel_messages(CHAN) == []


async def test_a_client_built_outside_is_used(fake: FakeDiscord, dsettings: Settings) -> None:
    """A harness hands the adapter its own client: the adapter runs it and answers through it."""
    client = GenrelayClient(None, intents=discord.Intents.default(), guild_ready_timeout=0.05)
    async with (
        open_core(dsettings) as core,
        DiscordAdapter(core, dsettings, client=client) as adapter,
        running(core),
    ):
        assert adapter.client is client and client.handler is adapter and adapter.connected
        models = await fake.slash("models", guild_id=GUILD, channel_id=CHAN, user_id=USER)
        assert await refusal(fake, models) == adapter.models_text()
    assert client.is_closed()


async def test_autocomplete_offers_only_valid_values(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    async def complete(command: str, focused: str, value: str, **options: Any) -> list[Any]:
        rec = await fake.autocomplete(
            command,
            focused=focused,
            value=value,
            guild_id=GUILD,
            channel_id=CHAN,
            user_id=USER,
            options=options,
        )
        await fake.wait_for(lambda: rec.acknowledged)
        return list(rec.autocomplete_choices or [])

    image_models = await complete("imagine", "model", "")
    assert [c["value"] for c in image_models] == ["gpt-image-2", "nanobanana", "nanobanana_pro"]
    assert image_models[1]["name"] == "Nano Banana — Fast everyday images and photo edits"
    assert await complete("imagine", "model", "veo") == []
    assert [c["value"] for c in await complete("video", "model", "sora")] == [
        "sora_studio",
        "sora_fast",
    ]
    ratios = await complete("video", "aspect_ratio", "", model="veo_fast")
    assert [c["value"] for c in ratios] == ["16:9", "9:16"]
    assert await complete("video", "aspect_ratio", "", model="sora_fast") == []
    qualities = await complete("imagine", "quality", "k", model="nanobanana_pro")
    assert [c["value"] for c in qualities] == ["1k", "2k", "4k"]
    assert await complete("imagine", "quality", "", model="gpt-image-2") == []


def answered_in_place(fake: FakeDiscord, rec: FakeInteraction) -> str:
    """The words of an interaction answered after its public defer: one callback (the
    "thinking…" defer), that message edited into the answer (public, as it was) and never
    deleted, no followup."""
    assert [cb["type"] for cb in rec.callbacks] == [5]
    assert not rec.callbacks[0].get("data", {}).get("flags", 0) & EPHEMERAL
    assert [r.path.rsplit("/", 1)[-1] for r in edits(fake, rec)] == ["@original"]
    assert fake.find_requests("DELETE", f"/webhooks/{APP_ID}/{rec.token}") == []
    assert fake.followups(rec.token) == []
    message = original(fake, rec)
    assert not message["flags"] & EPHEMERAL
    return str(message["content"])


async def test_an_unexpected_error_turns_the_thinking_message_into_the_apology(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DELETE of the deferred message for an ephemeral followup: Discord has answered
    that followup with 10008 Unknown Message (discord-api-docs#2739). (With an attached
    photo the defer comes first: the photo is downloaded before the job is recorded.)"""
    core, _ = app

    async def broken(*args: object, **kwargs: object) -> Job:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(core.service, "submit", broken)
    rec = await imagine(fake, prompt="a red fox", attachments=PHOTO)
    await fake.wait_for(lambda: edits(fake, rec))
    assert answered_in_place(fake, rec) == INTERNAL_ERROR_TEXT
    assert INTERNAL_ERROR_TEXT == (
        "Something went wrong on my side, so nothing was started. Please try again."
    )
    assert await jobs_for(core, rec) == []  # so "nothing was started" is true


async def test_a_failure_before_anything_is_recorded_is_the_private_first_answer(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a photo the job is recorded before the "thinking…": a failure there is
    answered privately, as a refusal is, and nothing was started."""
    core, _ = app

    async def broken(*args: object, **kwargs: object) -> Job:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(core.service, "submit", broken)
    rec = await imagine(fake, prompt="a red fox")
    assert await refused_first(fake, rec) == INTERNAL_ERROR_TEXT
    assert await jobs_for(core, rec) == []


async def test_a_job_recorded_before_its_thinking_goes_on_without_it(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    app: tuple[Core, DiscordAdapter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replica that recorded the job never answered the interaction (it was killed
    between the two, or Discord refused the defer): the job goes on, and its result is a
    channel reply that mentions the asker, once."""
    core, _ = app

    async def killed(*args: object, **kwargs: object) -> int:
        raise asyncio.CancelledError  # as a kill -9 leaves it: nothing after the record

    monkeypatch.setattr(discord_generate, "defer_thinking", killed)
    rec = await imagine(fake, prompt="a fox that was never answered")
    job = await delivered(core, rec)
    assert job.state is JobState.SUCCEEDED and job.status_message_id is None
    assert rec.callbacks == []  # the interaction itself was never answered
    posted = [m for m in fake.channel_messages(CHAN) if fake.message_files(m)]
    assert len(posted) == 1 and f"<@{USER}>" in posted[0]["content"]
    assert len(sandbox.create_calls()) == 1


async def test_an_error_after_the_job_is_recorded_never_says_nothing_was_started(
    fake: FakeDiscord,
    sandbox: SandboxGateway,
    app: tuple[Core, DiscordAdapter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core, _ = app
    submit = core.service.submit

    async def recorded_then_broken(*args: Any, **kwargs: Any) -> Job:
        await submit(*args, **kwargs)
        raise RuntimeError("the connection dropped after the commit")

    monkeypatch.setattr(core.service, "submit", recorded_then_broken)
    rec = await imagine(fake, prompt="a blue heron", attachments=PHOTO)
    job = await delivered(core, rec)
    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    assert fake.message_files(original(fake, rec))  # the result, in the thinking message
    said = [str(r.json.get("content")) for r in edits(fake, rec) if isinstance(r.json, dict)]
    assert INTERNAL_ERROR_TEXT not in said and OOPS_TEXT not in said
    assert fake.followups(rec.token) == []
    assert fake.find_requests("DELETE", f"/webhooks/{APP_ID}/{rec.token}") == []
    assert len(sandbox.create_calls()) == 1


async def test_a_slot_taken_between_the_check_and_the_submit_is_refused_in_place(
    fake: FakeDiscord, sandbox: SandboxGateway, dsettings: Settings
) -> None:
    """One image a day each. Alice's first request passes the check before the defer; while
    Discord takes that defer, her second request is checked, deferred and recorded. The
    first is then over the limit: its thinking message becomes the refusal."""
    settings = dsettings.model_copy(update={"user_daily_images": 1})
    async with serving(settings) as (core, _):
        taken: list[FakeInteraction] = []

        async def take_the_last_slot(_: Recorded) -> None:
            other = await imagine(fake, prompt="a second fox")
            await job_for(core, other)
            taken.append(other)

        fake.on_next("POST", "/interactions/", take_the_last_slot)
        rec = await imagine(fake, prompt="a first fox", attachments=PHOTO)  # defer first
        await fake.wait_for(lambda: edits(fake, rec))
        (refused,) = await jobs_for(core, rec)
        assert refused.state is JobState.REJECTED and refused.charged_usd == 0
        assert answered_in_place(fake, rec) == refused.error_message
        assert str(refused.error_message).startswith(
            "You've made 1 image today, the most allowed here. You can go again"
        )
        (other,) = taken
        await delivered(core, other)
        creates = sandbox.create_calls()
        assert len(creates) == 1 and b"a second fox" in creates[0].body


# -- delivery ------------------------------------------------------------------------------


async def test_a_result_after_the_token_expired_is_a_channel_reply_exactly_once(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter], clock: Clock
) -> None:
    core, adapter = app
    sandbox.script_next(duration=60.0)
    rec = await imagine(fake, prompt="a long red fox")
    job = await job_for(core, rec)
    await fake.wait_for(lambda: edits(fake, rec))  # the status message shows progress
    running_job = await until(lambda: with_task(core, job.id))

    clock.advance(16 * 60)  # Discord now refuses the interaction token
    fake.fail_next("POST", f"/channels/{CHAN}/messages", retry_after=0.05)
    sandbox.finish(str(running_job.upstream_task_id))
    done = await wait_delivered(core, job.id)

    assert done.delivery is Delivery.DELIVERED
    assert [r.status for r in edits(fake, rec) if r.files] == [401]
    posts = fake.find_requests("POST", f"/channels/{CHAN}/messages")
    assert [r.status for r in posts] == [429, 200]
    assert posts[-1].json["nonce"] == f"genrelay-{job.id}" and posts[-1].json["enforce_nonce"]
    assert posts[0].json["nonce"] == posts[-1].json["nonce"]  # the retry carries the same one
    assert len(posts[-1].json["nonce"]) <= 25  # Discord's limit for a nonce
    assert posts[-1].json["allowed_mentions"]["users"] == [USER]
    (reply,) = fake.channel_messages(CHAN, include_interactions=False)
    status = original(fake, rec)
    assert reply["content"] == ready_text(str(USER), "image") == f"<@{USER}> your image is ready."
    assert reply["message_reference"]["message_id"] == status["id"]
    assert [name for name, _, _ in fake.message_files(reply)] == [f"{job.id}-0.png"]
    assert reply["embeds"][0]["footer"]["text"] == "Asked by alice"
    assert labels(reply) == ["Reroll", "Animate", "4K"]

    # A retried delivery (the first answer lost) posts nothing new: the nonce de-duplicates,
    # whether the token looks fresh to us (401 first) or old (straight to the channel).
    files = await core.notifier.fetch_results(done)
    await adapter.sink.deliver(done, files)
    old = dataclasses.replace(
        done.origin, context={**done.origin.context, "received_at": time.time() - 20 * 60}
    )
    edits_before = len(edits(fake, rec))
    await adapter.sink.deliver(dataclasses.replace(done, origin=old), files)
    assert len(edits(fake, rec)) == edits_before  # straight to the channel
    assert len(fake.find_requests("POST", f"/channels/{CHAN}/messages")) == 4
    assert [m["id"] for m in fake.channel_messages(CHAN, include_interactions=False)] == [
        reply["id"]
    ]


async def test_a_429_on_delivery_still_yields_one_result(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    uploads = f"/webhooks/{APP_ID}/"
    fake.fail_next("PATCH", uploads, retry_after=0.05, match=lambda r: bool(r.files))
    rec = await imagine(fake, prompt="a red fox")
    job = await delivered(core, rec)

    assert job.delivery is Delivery.DELIVERED
    assert [r.status for r in edits(fake, rec) if r.files] == [429, 200]
    (message,) = fake.channel_messages(CHAN)
    assert len(fake.message_files(message)) == 1


async def test_a_stalled_progress_edit_never_delays_the_result(
    fake: FakeDiscord, dsettings: Settings, log_records: pytest.LogCaptureFixture
) -> None:
    # The first progress edit meets a 429 asking for 30 s; discord.py would sleep through it
    # while holding the interaction's webhook lock. The edit is dropped instead.
    fake.fail_next("PATCH", f"/webhooks/{APP_ID}/", retry_after=30.0, match=lambda r: not r.files)
    async with serving(dsettings, progress_timeout_s=0.2) as (core, _):
        rec = await imagine(fake, prompt="a red fox")
        job = await delivered(core, rec)

    assert job.delivery is Delivery.DELIVERED
    statuses = [(bool(r.files), r.status) for r in edits(fake, rec)]
    assert statuses[0] == (False, 429) and statuses[-1] == (True, 200)
    assert f"job {job.id}: progress edit dropped (Discord did not answer in time)" in (
        log_records.text
    )
    assert fake.message_files(original(fake, rec))


async def test_discord_errors_become_retries_or_give_ups(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, adapter = app
    rec = await imagine(fake, prompt="a red fox")
    done = await delivered(core, rec)
    files = await core.notifier.fetch_results(done)
    expired = dataclasses.replace(
        done.origin, context={**done.origin.context, "received_at": time.time() - 20 * 60}
    )
    late = dataclasses.replace(done, id="late000001", origin=expired)

    # A 429 longer than max_ratelimit_timeout: retry when Discord says.
    fake.fail_next("POST", f"/channels/{CHAN}/messages", retry_after=45.0)
    with pytest.raises(DeliveryError) as slow:
        await adapter.sink.deliver(late, files)
    assert slow.value.retry_after == 45.0 and not isinstance(slow.value, PermanentDeliveryError)

    # A failure after the token expired: the reply mentions the asker before the words.
    failed = dataclasses.replace(
        late, id="late000002", state=JobState.FAILED, error_code="rejected", error_message=None
    )
    await adapter.sink.deliver(failed, [])
    (post,) = fake.channel_messages(CHAN, include_interactions=False)
    assert post["content"] == f"<@{USER}> " + failure_text(failed, core.catalog)
    assert post["content"].startswith(f"<@{USER}> ❌ Nano Banana refused this image.")
    assert labels(post) == ["Reroll"] and post["embeds"] == []

    # The bot lost its permission to post: retrying cannot help.
    fake.deny_send(CHAN)
    with pytest.raises(PermanentDeliveryError, match="HTTP 403 code 50013"):
        await adapter.sink.deliver(late, files)
    assert fake.channel_messages(CHAN, include_interactions=False) == [post]


async def test_over_the_upload_limit_sends_a_link_with_a_note(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    fake.attachment_size_limit = 1024
    rec = await imagine(fake, prompt="a red fox")
    job = await delivered(core, rec)

    assert job.origin.context["upload_limit"] == 1024
    size = (core.settings.data_dir / "results" / f"{job.id}-0.png").stat().st_size
    assert size > 1024
    message = original(fake, rec)
    assert fake.message_files(message) == []
    note = link_note("image", size, 1024, job.result_urls[0])
    assert message["content"] == note
    assert note == (
        f"📎 This image is {human_size(size)}, more than the 1 KB I can upload here, so here "
        f"is a link instead (it expires, so save it soon): {job.result_urls[0]}"
    )
    assert link_note("video", None, 10 * 1024 * 1024, "https://x/v.mp4") == (
        "📎 This video is larger than the 10 MB I can upload here, so here is a link instead "
        "(it expires, so save it soon): https://x/v.mp4"
    )


async def test_an_upload_refused_as_too_large_falls_back_to_a_link(
    fake: FakeDiscord, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    fake.fail_next(
        "PATCH",
        f"/webhooks/{APP_ID}/",
        status=413,
        body={"message": "Request entity too large", "code": 40005},
        match=lambda r: bool(r.files),
    )
    rec = await imagine(fake, prompt="a red fox")
    job = await delivered(core, rec)

    message = original(fake, rec)
    assert fake.message_files(message) == []
    assert job.result_urls[0] in message["content"] and message["content"].startswith("📎")


async def test_a_job_running_across_a_restart_is_delivered_by_the_next_process(
    fake: FakeDiscord, sandbox: SandboxGateway, dsettings: Settings
) -> None:
    sandbox.script_next(duration=60.0)
    async with serving(dsettings) as (core, adapter):
        rec = await imagine(fake, prompt="a patient fox")
        job = await job_for(core, rec)
        running_job = await until(lambda: with_task(core, job.id))
    assert not adapter.connected
    sandbox.finish(str(running_job.upstream_task_id))

    async with serving(dsettings) as (core, _):
        done = await wait_delivered(core, job.id)
    assert done.state is JobState.SUCCEEDED and done.delivery is Delivery.DELIVERED
    message = original(fake, rec)
    assert [name for name, _, _ in fake.message_files(message)] == [f"{job.id}-0.png"]
    assert len(fake.gateway_connections) == 2


# -- buttons -------------------------------------------------------------------------------


async def test_buttons_work_after_a_restart_and_belong_to_the_presser(
    fake: FakeDiscord, sandbox: SandboxGateway, dsettings: Settings
) -> None:
    async with serving(dsettings) as (core, _):
        rec = await imagine(fake, prompt="a red fox", quality="2k")
        first = await delivered(core, rec)
    result = original(fake, rec)
    ids = custom_ids(result)

    async with serving(dsettings) as (core, _):  # a new process on the same database
        jobs = []
        for custom_id in ids:
            press = await fake.press(
                custom_id, message_id=result["id"], guild_id=GUILD, channel_id=CHAN, user_id=OTHER
            )
            job = await delivered(core, press)
            assert [cb["type"] for cb in press.callbacks] == [5]
            message = original(fake, press)
            assert job.status_message_id == message["id"]
            assert message["embeds"][0]["footer"]["text"] == "Asked by bob"
            assert fake.message_files(message)
            jobs.append(job)

    reroll, animate, upscale = jobs
    for job in jobs:
        assert job.origin.user_id == str(OTHER) and job.parent_job_id == first.id
        assert job.state is JobState.SUCCEEDED and job.prompt == first.prompt
    assert (reroll.action, reroll.kind, reroll.model) == ("reroll", Kind.IMAGE, "nanobanana")
    assert (animate.action, animate.kind, animate.model) == ("animate", Kind.VIDEO, "veo_fast")
    assert (upscale.action, upscale.quality) == ("upscale", "4k")
    assert [c.json["model"] for c in sandbox.create_calls()] == [
        "nanobanana",
        "nanobanana",
        "veo_fast",
        "nanobanana",
    ]


async def test_a_refused_button_press_is_answered_privately(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    _, adapter = app
    # A result whose job this database does not know (another deployment, a wiped store).
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("an", "abcdefghjk"))
    posted = await adapter.client.get_partial_messageable(CHAN).send("old result", view=view)

    press = await fake.press(
        "genrelay:an:abcdefghjk",
        message_id=posted.id,
        guild_id=GUILD,
        channel_id=CHAN,
        user_id=OTHER,
    )
    assert await refused_first(fake, press) == "I can't find that job any more."
    assert sandbox.requests == []
    assert [m["id"] for m in fake.channel_messages(CHAN)] == [str(posted.id)]


# -- genrelay discord sync -----------------------------------------------------------------

COMMANDS = [
    "imagine",
    "video",
    "models",
    "help",
    "settings",
    "history",
    "usage",
    "cancel",
    "session",
]
SLASHED = ", ".join(f"/{name}" for name in COMMANDS)


async def test_sync_commands_to_a_guild(
    fake: FakeDiscord,
    dsettings: Settings,
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await sync_commands(dsettings, guild_id=GUILD) == 0
    (put,) = fake.find_requests("PUT", f"/applications/{APP_ID}/guilds/{GUILD}/commands")
    assert put.status == 200
    commands = {c["name"]: c for c in fake.registered_commands(GUILD)}
    assert list(commands) == COMMANDS
    assert fake.registered_commands() == []  # nothing global
    options = {o["name"]: o for o in commands["imagine"]["options"]}
    assert {n: o["type"] for n, o in options.items()} == {
        "prompt": 3,
        "model": 3,
        "aspect_ratio": 3,
        "quality": 3,
        "image1": 11,
        "image2": 11,
        "image3": 11,
    }
    assert options["prompt"]["required"] and options["model"]["autocomplete"]
    assert "quality" not in {o["name"] for o in commands["video"]["options"]}
    out = capsys.readouterr().out
    assert out == f"Synced 9 commands to server {GUILD}: {SLASHED}\n"
    assert fake.gateway_connections == []  # REST only

    assert await sync_commands(dsettings, guild_id=None) == 0
    assert [c["name"] for c in fake.registered_commands()] == COMMANDS
    assert capsys.readouterr().out == (
        f"Synced 9 global commands: {SLASHED} (Discord may take up to an hour)\n"
    )

    assert await sync_commands(make_settings(), guild_id=None) == 2
    assert capsys.readouterr().err == (
        "genrelay: DISCORD_BOT_TOKEN is not set, so there is nothing to sync.\n"
    )
    wrong = dsettings.model_copy(update={"discord_bot_token": SecretStr("not-the-token")})
    assert await sync_commands(wrong, guild_id=GUILD) == 2
    assert capsys.readouterr().err == "genrelay: Discord refused DISCORD_BOT_TOKEN.\n"
    fake.fail_next(
        "PUT",
        f"/applications/{APP_ID}/guilds/{GUILD}/commands",
        status=400,
        body={"message": "Invalid Form Body", "code": 50035},
    )
    assert await sync_commands(dsettings, guild_id=GUILD) == 1
    assert capsys.readouterr().err == (
        "genrelay: syncing the commands failed: Failed to upload commands to Discord "
        "(HTTP status 400, error code 50035)\n"
    )
    assert await sync_commands(dsettings, guild_id=999) == 1
    assert capsys.readouterr().err == (
        "genrelay: Discord would not register the commands in server 999 (Missing Access). "
        "Invite the bot there with the applications.commands scope.\n"
    )


async def test_guild_synced_commands_reach_the_adapter(
    fake: FakeDiscord, dsettings: Settings
) -> None:
    assert await sync_commands(dsettings, guild_id=GUILD) == 0
    async with serving(dsettings) as (core, _):
        rec = await imagine(fake, prompt="a red fox")
        assert rec.payload["data"]["guild_id"] == str(GUILD)
        job = await delivered(core, rec)
    assert job.state is JobState.SUCCEEDED


async def test_no_token_or_no_gateway_fails_to_start(
    dsettings: Settings, make_settings: Callable[..., Settings]
) -> None:
    unset = make_settings()
    async with open_core(unset) as core:
        with pytest.raises(ConfigError, match=r"^DISCORD_BOT_TOKEN is not set$"):
            async with DiscordAdapter(core, unset):
                pass
    async with open_core(dsettings) as core:
        with pytest.raises(PlatformUnavailable, match=r"^Discord was not ready within 0\.001 s$"):
            async with DiscordAdapter(core, dsettings, ready_timeout_s=0.001):
                pass
        assert "discord" not in core.notifier.sinks
    # A gateway nobody answers: discord.py either keeps retrying (our timeout) or gives up
    # with an error of its own; both end the start cleanly, as a start to try again.
    nowhere = dsettings.model_copy(update={"discord_gateway_url": "ws://127.0.0.1:9/gateway"})
    async with open_core(nowhere) as core:
        with pytest.raises(
            PlatformUnavailable, match=r"^Discord (was not ready|could not be reached)"
        ):
            async with DiscordAdapter(core, nowhere, ready_timeout_s=0.5):
                pass
    assert Route.BASE == "https://discord.com/api/v10"  # discord.py is pointed back


async def test_a_wrong_token_fails_to_start(
    fake: FakeDiscord, dsettings: Settings, sandbox: SandboxGateway
) -> None:
    bad = dsettings.model_copy(update={"discord_bot_token": SecretStr("not-the-token")})
    async with open_core(bad) as core:
        with pytest.raises(ConfigError, match="refused DISCORD_BOT_TOKEN"):
            async with DiscordAdapter(core, bad, guild_ready_timeout=0.05):
                pass
        assert "discord" not in core.notifier.sinks


async def test_a_button_naming_a_job_of_another_server_is_refused_and_costs_nothing(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, adapter = app
    first = await delivered(core, await imagine(fake, prompt="a secret garden"))
    fake.add_guild(7000, "elsewhere", channels=[7001])
    await fake.dispatch_guild_create(7000)
    # A message in another server whose button names that job (a forged or copied payload).
    view = discord.ui.View(timeout=None)
    for action in ("rr", "an", "4k"):
        view.add_item(JobButton(action, first.id))
    posted = await adapter.client.get_partial_messageable(7001).send("copied", view=view)

    for action in ("rr", "an", "4k"):
        press = await fake.press(
            f"genrelay:{action}:{first.id}",
            message_id=posted.id,
            guild_id=7000,
            channel_id=7001,
            user_id=OTHER,
        )
        assert await refusal(fake, press) == (
            "That button is for a job from another chat, so it does nothing here."
        )
    assert [j.id for j in await core.store.recent(10)] == [first.id]  # nothing recorded
    assert len(sandbox.create_calls()) == 1


async def test_a_garbled_answer_to_the_first_status_never_says_nothing_was_started(
    fake: FakeDiscord, sandbox: SandboxGateway, app: tuple[Core, DiscordAdapter]
) -> None:
    core, _ = app
    # Discord takes the first status edit but answers what discord.py cannot read.
    fake.fail_next("PATCH", f"/webhooks/{APP_ID}/", status=200, body={"garbled": True})
    rec = await imagine(fake, prompt="a glass whale")
    job = await delivered(core, rec)
    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    assert fake.message_files(original(fake, rec))  # the result still came
    assert fake.followups(rec.token) == []  # and no apology claiming nothing was started
    assert len(sandbox.create_calls()) == 1
