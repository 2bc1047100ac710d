"""The Telegram adapter end to end: the real python-telegram-bot client inside TelegramAdapter,
against FakeTelegram on loopback, with the sandbox as the gateway and a real core."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from telegram.ext import ApplicationBuilder

from adapters.telegram import TelegramAdapter
from adapters.telegram import adapter as telegram_adapter
from adapters.telegram import generate as telegram_generate
from adapters.telegram.flood import FloodControl
from adapters.telegram.generate import ack_reaction
from adapters.telegram.texts import link_note
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import setup_logging
from bot.main.wiring import open_core
from bot.models import Delivery, Job, JobState, Kind, Origin
from sandbox import SandboxGateway
from storage.sqlite import SqliteJobStore
from tests.conftest import API_KEY, running
from tests.fakes.telegram_api import Call, FakeTelegram
from tests.helpers import PNG_1PX, corrupt_jpeg, jpeg_bytes

JSONDict = dict[str, Any]

TOKEN = "7012345678:AAHfake-Token_for-genrelay-tests-0123"
GROUP_ID = -1001234567890
FORUM_ID = -1009876543210
JPEG = jpeg_bytes(0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMPTY_PROMPT = "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”."


def jpeg(n: int) -> bytes:
    """A distinct JPEG per n."""
    return jpeg_bytes(n)


@dataclass
class Bed:
    fake: FakeTelegram
    sandbox: SandboxGateway
    core: Core
    adapter: TelegramAdapter
    group: JSONDict
    ann: JSONDict
    bob: JSONDict

    async def job_for(self, message: JSONDict, timeout: float = 5.0) -> Job:
        """The job the message became (waits for the core to record it)."""
        key = str(message["message_id"])

        def find(jobs: list[Job]) -> Job | None:
            return next((j for j in jobs if j.origin.message_id == key), None)

        return await wait_for_value(
            lambda: self.core.store.recent(50, platform="telegram"), find, timeout
        )

    async def wait_delivered(self, job_id: str, timeout: float = 8.0) -> Job:
        async def get() -> list[Job]:
            job = await self.core.store.get(job_id)
            return [job] if job else []

        return await wait_for_value(
            get,
            lambda jobs: (
                jobs[0]
                if jobs
                and jobs[0].delivery is not Delivery.PENDING
                and jobs[0].delivery is not Delivery.NONE
                else None
            ),
            timeout,
        )


async def wait_for_value(
    fetch: Callable[[], Awaitable[list[Job]]],
    pick: Callable[[list[Job]], Job | None],
    timeout: float,
) -> Job:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = pick(await fetch())
        if found is not None:
            return found
        assert loop.time() < deadline, "timed out waiting for a job"
        await asyncio.sleep(0.02)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


OpenBed = Callable[..., AbstractAsyncContextManager[Bed]]


@pytest.fixture
def open_bed(
    fake: FakeTelegram, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> OpenBed:
    @asynccontextmanager
    async def opener(
        *, adapter_kwargs: dict[str, Any] | None = None, **overrides: Any
    ) -> AsyncIterator[Bed]:
        settings = make_settings(
            aa_base_url=sandbox.base_url,
            telegram_bot_token=SecretStr(fake.token),
            telegram_api_base_url=fake.api_base,
            telegram_file_base_url=fake.file_base,
            **overrides,
        )
        kwargs: dict[str, Any] = {
            "album_debounce_s": 0.2,
            "poll_timeout_s": 1.0,
            # The real limiter, without the 20-per-minute group budget a test would exceed.
            "rate_limiter": FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=1),
        }
        kwargs.update(adapter_kwargs or {})
        async with (
            open_core(settings) as core,
            running(core),
            TelegramAdapter(core, settings, **kwargs) as adapter,
        ):
            assert adapter.connected
            yield Bed(
                fake=fake,
                sandbox=sandbox,
                core=core,
                adapter=adapter,
                group=fake.group(GROUP_ID, "Art club"),
                ann=fake.user(42, "Ann <3", "ann"),
                bob=fake.user(43, "Bob", "bob"),
            )
        assert not adapter.connected

    return opener


@pytest.fixture
async def bed(open_bed: OpenBed) -> AsyncIterator[Bed]:
    async with open_bed() as b:
        yield b


def buttons(call: Call) -> list[tuple[str, str]]:
    markup = call.params.get("reply_markup") or {}
    return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]


def replied_to(call: Call) -> int:
    return int(call.params["reply_parameters"]["message_id"])


def answers(message: JSONDict) -> Callable[[Call], bool]:
    """A call replying to `message` (in its chat)."""
    chat_id = message["chat"]["id"]
    return lambda c: str(c.chat_id) == str(chat_id) and replied_to(c) == message["message_id"]


async def reply_text(fake: FakeTelegram, message: JSONDict, since: int = 0) -> str:
    call = await fake.wait_for("sendMessage", answers(message), since=since)
    return str(call.params["text"])


def reactions_to(fake: FakeTelegram, message: JSONDict) -> list[Call]:
    """setMessageReaction calls on `message` (failed ones too)."""
    key = (message["chat"]["id"], message["message_id"])
    return [
        c
        for c in fake.calls
        if c.method == "setMessageReaction" and (c.chat_id, c.params.get("message_id")) == key
    ]


def no_secret_in(sandbox: SandboxGateway, secret: str) -> None:
    for r in sandbox.requests:
        assert secret not in r.path
        assert secret not in json.dumps(r.query)
        assert secret not in json.dumps(r.headers)
        assert secret.encode() not in r.body


# -- commands ----------------------------------------------------------------------------------


async def test_imagine_in_group_replies_once_with_photo_and_tidy_status(bed: Bed) -> None:
    fake, sandbox = bed.fake, bed.sandbox
    sandbox.script_next(duration=0.6)  # long enough for a few progress edits
    ask = fake.send_text(bed.group, bed.ann, "/imagine@genrelay_bot a red fox <in> snow --ar 1:1")

    photo = await fake.wait_for("sendPhoto", timeout=8)
    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    # One upstream request, one photo replying to the asking message, in the same chat.
    assert len(sandbox.create_calls()) == 1
    assert len(fake.sent("sendPhoto")) == 1
    assert photo.chat_id == GROUP_ID and replied_to(photo) == ask["message_id"]
    assert photo.params["reply_parameters"]["allow_sending_without_reply"] is True
    assert "message_thread_id" not in photo.params
    assert photo.params["parse_mode"] == "HTML"
    assert photo.params["caption"] == (
        'Nano Banana · “a red fox &lt;in&gt; snow”\n<a href="tg://user?id=42">Ann &lt;3</a>'
    )
    assert photo.upload is not None and photo.upload[1].startswith(PNG_SIGNATURE)
    assert buttons(photo) == [
        ("🔁 Reroll", f"rr:{job.id}"),
        ("🎬 Animate", f"an:{job.id}"),
        ("🔍 4K", f"4k:{job.id}"),
        ("📎 Original", f"og:{job.id}"),
    ]
    markup = photo.params["reply_markup"]["inline_keyboard"]
    assert [len(row) for row in markup] == [3, 1]  # the original on a row of its own
    assert all(len(data.encode()) <= 64 for _, data in buttons(photo))
    # One result, one message: the uncompressed original is not sent unasked.
    assert fake.sent("sendDocument") == []

    # The status line: created as a reply, edited (never with the same text), then deleted.
    status = fake.sent("sendMessage")[0]
    assert status.params["text"] == "⏳ Queued on Nano Banana…"
    assert replied_to(status) == ask["message_id"]
    status_id = status.result["message_id"]
    assert job.status_message_id == str(status_id)
    edits = [c for c in fake.calls if c.method == "editMessageText"]
    assert edits and all(c.ok and c.params["message_id"] == status_id for c in edits)
    texts = [status.params["text"]] + [c.params["text"] for c in edits]
    assert all(a != b for a, b in itertools.pairwise(texts))
    assert any("▰" in t or "queue" in t for t in texts[1:])
    deleted = await fake.wait_for("deleteMessage")
    assert deleted.params["message_id"] == status_id
    assert (GROUP_ID, status_id) not in fake.messages
    assert len(fake.sent("sendMessage")) == 1  # nothing else was said

    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    assert job.origin.user_id == "42" and job.origin.user_name == "Ann <3"
    assert job.aspect_ratio == "1:1"


async def test_help_start_models_and_command_list(bed: Bed) -> None:
    fake = bed.fake
    chat = fake.private_chat(bed.ann)
    help_msg = fake.send_text(chat, bed.ann, "/help")
    help_text = await reply_text(fake, help_msg)
    start_msg = fake.send_text(chat, bed.ann, "/start")
    start_text = await reply_text(fake, start_msg)
    models_msg = fake.send_text(bed.group, bed.ann, "/models@genrelay_bot")
    models_text = await reply_text(fake, models_msg)

    assert help_text.startswith("🎨 I make images and videos with AI models.")
    assert "/imagine <prompt> – an image (Nano Banana unless you pick another model)" in help_text
    assert "/video <prompt> – a video (Veo 3.1 Fast unless you pick another model)" in help_text
    assert "/imagine a red fox in fresh snow --ar 9:16" in help_text
    assert "caption /video <prompt> to animate it" in help_text
    assert "Replying to a photo with the command works too." in help_text
    assert "Options: --model NAME, --ar 16:9, --quality 4k." in help_text
    assert start_text == "👋 Hi! " + help_text

    lines = models_text.splitlines()
    assert lines[0] == "Models (★ = default):"
    assert "🎬 veo_fast — Veo 3.1 Fast: Quick video drafts and previews (~$0.25) ★" in lines
    assert "🖼 nanobanana — Nano Banana: Fast everyday images and photo edits (~$0.04) ★" in lines
    assert any(line.startswith("🎬 sora_studio — Sora Studio") for line in lines)
    assert lines[-1] == "Pick one with --model, e.g. /video a paper boat on a lake --model veo"
    assert len(bed.sandbox.create_calls()) == 0

    commands = fake.commands[(json.dumps({"type": "default"}), "")]
    assert [(c["command"], c["description"]) for c in commands] == [
        ("imagine", "Make an image, e.g. /imagine a fox in snow"),
        ("video", "Make a video, or animate a photo"),
        ("models", "Every model, with what it costs"),
        ("history", "Your recent jobs here, to get a result again"),
        ("usage", "What you made and spent today"),
        ("cancel", "Stop your job that hasn't been sent yet"),
        ("settings", "This chat's limits and models"),
        ("session", "A creative session: /session start <theme>"),
        ("help", "How to use me, with examples"),
    ]


async def test_an_application_built_outside_is_used(
    fake: FakeTelegram, sandbox: SandboxGateway, make_settings: Callable[..., Settings]
) -> None:
    """A harness hands the adapter its own PTB Application: the adapter runs it and answers
    through it (no TELEGRAM_BOT_TOKEN needed: the application's bot has its token)."""
    application = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.api_base)
        .base_file_url(fake.file_base)
        .build()
    )
    settings = make_settings(aa_base_url=sandbox.base_url)
    async with (
        open_core(settings) as core,
        running(core),
        TelegramAdapter(core, settings, application=application, poll_timeout_s=1.0) as adapter,
    ):
        assert adapter.app is application and adapter.connected
        ann = fake.user(42, "Ann", "ann")
        help_msg = fake.send_text(fake.private_chat(ann), ann, "/help")
        assert (await reply_text(fake, help_msg)).startswith("🎨 I make images and videos")
    assert not adapter.connected and not application.running


async def test_commands_for_another_bot_are_ignored(bed: Bed) -> None:
    fake = bed.fake
    fake.send_text(bed.group, bed.ann, "/imagine@OtherBot a fox")
    fake.send_photo(bed.group, bed.ann, jpeg(1), caption="/video@OtherBot make it move")
    fake.send_text(bed.group, bed.ann, "/models@OtherBot")
    fake.send_text(bed.group, bed.ann, "just chatting")
    probe = fake.send_text(bed.group, bed.bob, "/help@GenRelay_Bot")  # usernames: any case

    await reply_text(fake, probe)  # updates are handled in order: the others were seen

    assert len(fake.sent("sendMessage")) == 1
    assert [c.method for c in fake.calls if c.method.startswith("send")] == ["sendMessage"]
    assert fake.reactions == {}  # no 👀 for another bot's command
    assert not [c for c in fake.calls if c.method in ("getFile", "downloadFile")]
    assert bed.sandbox.create_calls() == []
    assert await bed.core.store.recent(10) == []


# -- acknowledgement ---------------------------------------------------------------------------


async def test_a_command_is_acknowledged_by_a_reaction_before_its_status(bed: Bed) -> None:
    fake = bed.fake
    ask = fake.send_text(bed.group, bed.ann, "/imagine a lighthouse at dawn")
    helped = fake.send_text(bed.group, bed.bob, "/help")

    status = await fake.wait_for("sendMessage", answers(ask))
    await reply_text(fake, helped)
    await bed.wait_delivered((await bed.job_for(ask)).id)

    [reaction] = reactions_to(fake, ask)
    assert reaction.ok and reaction.params["reaction"] == [{"type": "emoji", "emoji": "👀"}]
    assert reaction.time < status.time  # the first thing the asker sees
    assert fake.reactions == {(GROUP_ID, ask["message_id"]): [{"type": "emoji", "emoji": "👀"}]}
    assert reactions_to(fake, helped) == []  # only commands that make something


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (400, "Bad Request: REACTION_INVALID"),  # reactions restricted in the group
        (429, None),  # flood control: not retried, and nothing else waits for it
    ],
)
async def test_a_failed_reaction_stops_nothing(
    bed: Bed, caplog: pytest.LogCaptureFixture, status: int, description: str | None
) -> None:
    caplog.set_level(logging.INFO)
    fake = bed.fake
    fake.fail_next("setMessageReaction", status=status, retry_after=30, description=description)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a lighthouse at dawn")

    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    assert job.delivery is Delivery.DELIVERED and len(fake.sent("sendPhoto")) == 1
    assert [c.status for c in reactions_to(fake, ask)] == [status]
    assert fake.reactions == {}
    assert any(
        r.getMessage().startswith(
            f"telegram: chat {GROUP_ID} message {ask['message_id']}: no reaction ("
        )
        and r.levelno == logging.INFO
        for r in caplog.records
    )


async def test_an_album_is_acknowledged_before_it_is_all_in(open_bed: OpenBed) -> None:
    async with open_bed(adapter_kwargs={"album_debounce_s": 0.5}) as bed:
        fake = bed.fake
        first = fake.send_photo(
            bed.group, bed.ann, jpeg(1), caption="/video make them dance", media_group_id="a-9"
        )
        reaction = await fake.wait_for("setMessageReaction")
        fake.send_photo(bed.group, bed.ann, jpeg(2), media_group_id="a-9")

        status = await fake.wait_for("sendMessage", answers(first), timeout=8)
        job = await bed.job_for(first)

        assert (reaction.chat_id, reaction.params["message_id"]) == (GROUP_ID, first["message_id"])
        assert len(job.images) == 2  # the photo that came after the reaction is in the job
        assert reaction.time < status.time
        assert len(fake.sent("setMessageReaction")) == 1


async def test_the_reaction_is_configurable(open_bed: OpenBed) -> None:
    async with open_bed(telegram_ack_reaction="") as bed:
        ask = bed.fake.send_text(bed.group, bed.ann, "/imagine a quiet bay")
        await bed.fake.wait_for("sendMessage", answers(ask))
        assert reactions_to(bed.fake, ask) == []
    async with open_bed(telegram_ack_reaction=" ❤️ ") as bed:  # as typed: ❤ with U+FE0F
        ask = bed.fake.send_text(bed.group, bed.ann, "/video a quiet bay")
        await bed.fake.wait_for("sendMessage", answers(ask))
        [reaction] = reactions_to(bed.fake, ask)
        assert reaction.params["reaction"] == [{"type": "emoji", "emoji": "❤"}]


async def test_a_reaction_telegram_does_not_take_is_refused_at_start(open_bed: OpenBed) -> None:
    with pytest.raises(ConfigError) as refused:
        async with open_bed(telegram_ack_reaction="wave"):
            pass
    message = str(refused.value)
    assert message.startswith(
        "TELEGRAM_ACK_REACTION is 'wave', which Telegram does not take as a bot's reaction; "
        "set one of 👍 👎 ❤ 🔥"
    )
    assert message.endswith(", or leave it empty for none")
    assert ack_reaction("👀") == "👀" and ack_reaction("❤️‍🔥") == "❤️‍🔥" and ack_reaction(" ") is None


async def test_forum_topic_replies_stay_in_the_topic(bed: Bed) -> None:
    fake = bed.fake
    forum = fake.group(FORUM_ID, "Studio", is_forum=True)
    ask = fake.send_text(forum, bed.ann, "/imagine a lighthouse at dawn", thread_id=77)

    photo = await fake.wait_for("sendPhoto", timeout=8)
    await bed.wait_delivered((await bed.job_for(ask)).id)

    status = fake.sent("sendMessage")[0]
    for call in (status, photo):
        assert call.chat_id == FORUM_ID
        assert call.params["message_thread_id"] == 77
        assert replied_to(call) == ask["message_id"]
    assert photo.result["is_topic_message"] is True
    # The original, when pressed for, goes to the topic too.
    job = await bed.job_for(ask)
    result_msg = fake.messages[(FORUM_ID, photo.result["message_id"])]
    fake.press_button(forum, bed.bob, result_msg, f"og:{job.id}")
    document = await fake.wait_for("sendDocument")
    assert document.params["message_thread_id"] == 77
    assert replied_to(document) == result_msg["message_id"]


async def test_a_job_waiting_its_turn_says_so_in_its_status(open_bed: OpenBed) -> None:
    async with open_bed(chat_concurrent_jobs=1) as bed:
        fake, sandbox = bed.fake, bed.sandbox
        sandbox.script_next(duration=0.5)
        first = fake.send_text(bed.group, bed.ann, "/imagine a kite")
        await wait_for_value(
            lambda: bed.core.store.recent(5),
            lambda jobs: next((j for j in jobs if j.upstream_task_id), None),
            5,
        )  # the chat's one slot is taken
        second = fake.send_text(bed.group, bed.bob, "/imagine a second kite")

        status = await fake.wait_for("sendMessage", answers(second))
        job = await bed.job_for(second)
        assert status.params["text"] == (
            "⏳ In line for Nano Banana: 1st in this chat. It starts when a slot frees up."
        )
        assert buttons(status) == [("✖️ Cancel", f"cx:{job.id}")]
        # Once it is sent, its status line moves on and the Cancel button goes.
        moved = await fake.wait_for(
            "editMessageText", lambda c: c.params["message_id"] == status.result["message_id"]
        )
        assert "reply_markup" not in moved.params
        for message in (first, second):
            done = await bed.wait_delivered((await bed.job_for(message)).id)
            assert done.delivery is Delivery.DELIVERED
        assert len(fake.sent("sendPhoto")) == 2


# -- photos ------------------------------------------------------------------------------------


async def test_a_phones_dashes_make_options_and_stay_in_the_prompt(bed: Bed) -> None:
    typed = "/imagine a fox\u2014in snow \u2014ar 9:16 \u2010\u2010model nanobanana_pro"
    ask = bed.fake.send_text(bed.group, bed.ann, typed)
    job = await bed.wait_delivered((await bed.job_for(ask)).id)
    assert (job.prompt, job.aspect_ratio, job.model) == (
        "a fox\u2014in snow",
        "9:16",
        "nanobanana_pro",
    )
    [create] = bed.sandbox.create_calls()
    assert create.json["prompt"] == "a fox\u2014in snow"


async def test_captioned_photo_video_sends_image_as_data_url(bed: Bed) -> None:
    fake, sandbox = bed.fake, bed.sandbox
    chat = fake.private_chat(bed.bob)
    data = jpeg(7)
    ask = fake.send_photo(chat, bed.bob, data, caption="/video make the waves move --model veo")

    video = await fake.wait_for("sendVideo", timeout=8)
    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    [create] = sandbox.create_calls()
    body = json.dumps(create.json)
    assert f"data:image/jpeg;base64,{base64.b64encode(data).decode()}" in body
    assert create.json["model"] == "veo"
    no_secret_in(sandbox, fake.token)
    download = await fake.wait_for("downloadFile")
    assert download.params["file_path"].startswith("photos/")

    assert job.kind is Kind.VIDEO and len(job.images) == 1
    assert job.images[0].ref.startswith("media:")
    assert video.params["supports_streaming"] is True
    assert replied_to(video) == ask["message_id"]
    assert video.params["caption"].startswith("Veo 3.1 · “make the waves move”\n")
    assert buttons(video) == [("🔁 Reroll", f"rr:{job.id}")]  # no Animate or 4K for a video
    assert video.upload is not None and video.upload[1][4:8] == b"ftyp"
    assert fake.sent("sendPhoto") == [] and fake.sent("sendDocument") == []


async def test_reply_to_a_photo_uses_it_via_public_url(open_bed: OpenBed) -> None:
    async with open_bed(public_base_url="https://relay.example.org/") as bed:
        fake, sandbox = bed.fake, bed.sandbox
        data = jpeg(9)
        photo_msg = fake.send_photo(bed.group, bed.bob, data)  # no command: ignored alone
        ask = fake.send_text(
            bed.group,
            bed.ann,
            "/imagine make it blue",
            reply_to=photo_msg,
            thread_id=photo_msg["message_id"],  # a plain group's reply thread, not a topic
        )

        sent = await fake.wait_for("sendPhoto", timeout=8)
        job = await bed.wait_delivered((await bed.job_for(ask)).id)

        [create] = sandbox.create_calls()
        [url] = create.json["images"]
        name = job.images[0].ref.removeprefix("media:")
        assert url == f"https://relay.example.org/media/{name}"
        assert (bed.core.media.hosted_dir / name).read_bytes() == data
        assert replied_to(sent) == ask["message_id"]
        assert "message_thread_id" not in sent.params
        assert job.origin.user_id == "42"  # the asker, not the photo's author
        no_secret_in(sandbox, fake.token)


async def test_album_of_three_photos_is_one_job(bed: Bed) -> None:
    fake, sandbox = bed.fake, bed.sandbox
    first = fake.send_photo(
        bed.group,
        bed.ann,
        jpeg(1),
        caption="/imagine blend these into one poster --model nanobanana_pro",
        media_group_id="alb-1",
    )
    fake.send_photo(bed.group, bed.ann, jpeg(2), media_group_id="alb-1")
    fake.send_photo(bed.group, bed.ann, jpeg(3), media_group_id="alb-1")

    photo = await fake.wait_for("sendPhoto", timeout=8)
    job = await bed.wait_delivered((await bed.job_for(first)).id)

    [create] = sandbox.create_calls()
    images = create.json["images"]
    assert [base64.b64decode(u.split(",", 1)[1]) for u in images] == [jpeg(1), jpeg(2), jpeg(3)]
    assert job.model == "nanobanana_pro" and len(job.images) == 3
    assert replied_to(photo) == first["message_id"]
    assert len(fake.sent("sendMessage")) == 1  # one status line for the whole album


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_input_gets_a_friendly_reply_and_no_upstream_call(bed: Bed) -> None:
    fake = bed.fake
    g, ann = bed.group, bed.ann
    cases: list[tuple[JSONDict, str]] = [
        (fake.send_text(g, ann, "/imagine"), EMPTY_PROMPT),
        (fake.send_text(g, ann, "/video@genrelay_bot   "), EMPTY_PROMPT),
        (
            fake.send_text(g, ann, "/imagine a fox --model dalle9"),
            "I don't know the model “dalle9”.",
        ),
        (
            fake.send_text(g, ann, "/imagine a fox --seed 3"),
            "I don't know the option --seed. Options are: --model NAME, --ar 16:9, --quality 4k.",
        ),
        (
            fake.send_document(
                g,
                ann,
                b"%PDF-1.4 not an image",
                mime_type="application/pdf",
                file_name="notes.pdf",
                caption="/video animate this",
            ),
            "That file (notes.pdf) is not an image. "
            "Send a photo, or a JPEG, PNG, WebP or GIF file.",
        ),
        (
            fake.send_photo(g, ann, jpeg(1), caption="/video go", file_size=25 * 1024 * 1024),
            "That photo is 25 MB, over Telegram's 20 MB download limit for bots. "
            "Send it as a compressed photo, or a smaller file.",
        ),
        (
            fake.send_document(
                g,
                ann,
                jpeg(4),
                mime_type="image/jpeg",
                caption="/imagine sharpen it",
                file_size=30 * 1024 * 1024,
            ),
            "That file is 30 MB, over Telegram's 20 MB download limit for bots. "
            "Send it as a compressed photo, or a smaller file.",
        ),
        (
            fake.send_photo(
                g, ann, jpeg(2), caption="/video two cats --model sora_fast", media_group_id="a2"
            ),
            "Sora Fast takes at most 1 reference image; you sent 2. "
            "Send fewer, or pick another model.",
        ),
    ]
    fake.send_photo(g, ann, jpeg(3), media_group_id="a2")

    for message, expected in cases:
        text = await reply_text(fake, message)
        assert text.startswith(expected), (text, expected)

    assert bed.sandbox.create_calls() == []
    assert not [c for c in fake.calls if c.method in ("getFile", "downloadFile")]
    assert fake.sent("sendPhoto") == [] and fake.sent("editMessageText") == []
    assert len(fake.sent("sendMessage")) == len(cases)  # no status line for any of them
    rejected = await bed.core.store.recent(20)
    codes = sorted(j.error_code or "" for j in rejected)
    assert all(j.state is JobState.REJECTED for j in rejected)
    assert codes == ["empty_prompt", "empty_prompt", "too_many_images", "unknown_model"]


async def test_download_refusals(bed: Bed) -> None:
    fake = bed.fake
    fake.max_download_size = 100  # Telegram says "file is too big" whatever file_size said
    big = fake.send_photo(bed.group, bed.ann, jpeg(1), caption="/imagine make it blue")
    assert await reply_text(fake, big) == (
        "That photo is over Telegram's 20 MB download limit for bots. "
        "Send it as a compressed photo, or a smaller file."
    )
    fake.max_download_size = None
    fake.fail_next("getFile", status=400, description="Bad Request: wrong file_id")
    lost = fake.send_photo(bed.group, bed.ann, jpeg(2), caption="/imagine make it red")
    assert await reply_text(fake, lost) == (
        "I couldn't fetch that photo from Telegram. Please send it again."
    )
    fake_png = fake.send_document(
        bed.group,
        bed.ann,
        b"not really a png",
        mime_type="image/png",
        file_name="art.png",
        caption="/imagine sharpen it",
    )
    assert await reply_text(fake, fake_png) == (
        "That file is not an image I can use. Send a JPEG, PNG, WebP or GIF."
    )
    broken = fake.send_photo(bed.group, bed.ann, corrupt_jpeg(), caption="/imagine make it gold")
    assert await reply_text(fake, broken) == (
        "That photo could not be read as an image; please send it again as a JPEG or PNG."
    )
    broken_file = fake.send_document(
        bed.group,
        bed.ann,
        corrupt_jpeg(),
        mime_type="image/jpeg",
        file_name="scan.jpg",
        caption="/video make it move",
    )
    assert await reply_text(fake, broken_file) == (
        "That photo could not be read as an image; please send it again as a JPEG or PNG."
    )
    assert bed.sandbox.create_calls() == []


async def test_an_unexpected_error_is_answered(
    bed: Bed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Job:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(bed.core.service, "submit", broken)
    ask = bed.fake.send_text(bed.group, bed.ann, "/imagine a fox")
    text = await reply_text(bed.fake, ask, since=0)
    if text.startswith("⏳"):  # the status line came first; the apology follows it
        text = str((await bed.fake.wait_for("sendMessage", n=2)).params["text"])
    assert text == "⚠️ Something went wrong on my side and nothing was made. Please try again."
    assert any("/imagine failed" in r.getMessage() for r in caplog.records)
    assert bed.sandbox.create_calls() == []


# -- buttons -----------------------------------------------------------------------------------


async def test_reroll_animate_and_4k_buttons(bed: Bed) -> None:
    fake, core = bed.fake, bed.core
    ask = fake.send_text(bed.group, bed.ann, "/imagine a paper boat")
    photo = await fake.wait_for("sendPhoto", timeout=8)
    parent = await bed.wait_delivered((await bed.job_for(ask)).id)
    result_msg = fake.messages[(GROUP_ID, photo.result["message_id"])]

    async def press(data: str, answer: str) -> Job:
        since = len(fake.calls)
        query_id = fake.press_button(bed.group, bed.bob, result_msg, data)
        answered = await fake.wait_for("answerCallbackQuery", since=since)
        assert answered.params["callback_query_id"] == query_id
        assert answered.params["text"] == answer
        jobs = await core.store.recent(10)
        child = next(j for j in jobs if j.parent_job_id == parent.id and j.id not in seen)
        seen.add(child.id)
        status = await fake.wait_for("sendMessage", since=since)
        assert replied_to(status) == result_msg["message_id"]
        done = await bed.wait_delivered(child.id)
        assert done.status_message_id == str(status.result["message_id"])
        return done

    seen: set[str] = set()
    reroll = await press(f"rr:{parent.id}", "🔁 Rerolling on Nano Banana…")
    animate = await press(f"an:{parent.id}", "🎬 Animating with Veo 3.1 Fast…")
    upscale = await press(f"4k:{parent.id}", "🔍 Making a 4K version with Nano Banana…")

    for child in (reroll, animate, upscale):
        assert child.origin.user_id == "43" and child.origin.user_name == "Bob"
        assert child.origin.message_id == str(result_msg["message_id"])
        assert child.state is JobState.SUCCEEDED and child.delivery is Delivery.DELIVERED
    assert (reroll.action, reroll.prompt, reroll.model) == ("reroll", "a paper boat", "nanobanana")
    assert (animate.action, animate.kind, animate.model) == ("animate", Kind.VIDEO, "veo_fast")
    assert (upscale.action, upscale.quality) == ("upscale", "4k")
    assert len(bed.sandbox.create_calls()) == 4

    photos = fake.sent("sendPhoto")
    assert len(photos) == 3  # the first result, the reroll and the 4K version
    assert all(replied_to(p) == result_msg["message_id"] for p in photos[1:])
    assert all('<a href="tg://user?id=43">Bob</a>' in p.params["caption"] for p in photos[1:])
    four_k = next(p for p in photos if f"rr:{upscale.id}" in dict(buttons(p)).values())
    assert [t for t, _ in buttons(four_k)] == ["🔁 Reroll", "🎬 Animate", "📎 Original"]
    [video] = fake.sent("sendVideo")
    assert replied_to(video) == result_msg["message_id"]
    # The animated video started from the first result, hosted by us.
    create = bed.sandbox.create_calls()[2]
    assert "data:image/png;base64," in json.dumps(create.json)
    assert len(fake.sent("answerCallbackQuery")) == 3


async def test_the_original_is_one_tap_away_for_anyone_in_the_chat(bed: Bed) -> None:
    fake = bed.fake
    ask = fake.send_text(bed.group, bed.ann, "/imagine a paper crane")
    photo = await fake.wait_for("sendPhoto", timeout=8)
    job = await bed.wait_delivered((await bed.job_for(ask)).id)
    result_msg = fake.messages[(GROUP_ID, photo.result["message_id"])]
    assert fake.sent("sendDocument") == []

    async def press() -> Call:
        since = len(fake.calls)
        query_id = fake.press_button(bed.group, bed.bob, result_msg, f"og:{job.id}")
        answered = await fake.wait_for("answerCallbackQuery", since=since)
        assert answered.params["callback_query_id"] == query_id
        assert answered.params["text"] == "📎 Sending the original…"
        return await fake.wait_for("sendDocument", since=since)

    document = await press()  # Bob, not the asker
    assert document.chat_id == GROUP_ID
    assert replied_to(document) == result_msg["message_id"]
    assert document.params["caption"] == "Full-quality original, without Telegram's compression."
    assert document.upload is not None and photo.upload is not None
    assert document.upload[1] == photo.upload[1]  # the file as made, not recompressed
    assert "reply_markup" not in document.params
    # Each press sends it once; nothing else is said and nothing is made upstream.
    await press()
    assert len(fake.sent("sendDocument")) == 2
    assert len(fake.sent("sendPhoto")) == 1
    assert len(bed.sandbox.create_calls()) == 1
    assert [c.params["text"] for c in fake.sent("sendMessage")] == ["⏳ Queued on Nano Banana…"]

    # Refused as a file (too large for this Bot API server): a link to it instead.
    fake.fail_next("sendDocument", status=413, description="Request Entity Too Large")
    since = len(fake.calls)
    fake.press_button(bed.group, bed.ann, result_msg, f"og:{job.id}")
    link = await fake.wait_for("sendMessage", since=since)
    assert replied_to(link) == result_msg["message_id"]
    assert link.params["text"] == (
        "📎 Telegram wouldn't take this image as an upload, so here is a link instead "
        f"(it works for a limited time):\n{job.result_urls[0]}"
    )
    assert len(fake.sent("sendDocument")) == 2


async def test_a_refused_button_press_is_answered_with_the_reason(bed: Bed) -> None:
    fake = bed.fake
    ask = fake.send_text(bed.group, bed.ann, "/imagine a lamp")
    photo = await fake.wait_for("sendPhoto", timeout=8)
    await bed.wait_delivered((await bed.job_for(ask)).id)
    since = len(fake.calls)
    fake.push_update(
        {
            "callback_query": {
                "id": "cbq-gone",
                "from": bed.bob,
                "chat_instance": "x",
                "message": fake.messages[(GROUP_ID, photo.result["message_id"])],
                "data": "rr:zzzzzzzzzz",
            }
        }
    )
    answer = await fake.wait_for("answerCallbackQuery", since=since)
    assert answer.params["text"] == "I can't find that job any more."
    assert answer.params["show_alert"] is True
    assert len(bed.sandbox.create_calls()) == 1


# -- failures and delivery ---------------------------------------------------------------------


async def test_failed_and_refunded_jobs_say_whether_charged(bed: Bed) -> None:
    fake = bed.fake
    failed_ask = fake.send_text(bed.group, bed.ann, "/imagine a forbidden thing [fail]")
    refund_ask = fake.send_text(bed.group, bed.bob, "/video a broken take [refund]")

    failed = await bed.wait_delivered((await bed.job_for(failed_ask)).id)
    refunded = await bed.wait_delivered((await bed.job_for(refund_ask)).id)

    assert failed.state is JobState.FAILED and refunded.state is JobState.REFUNDED
    fail_text = await reply_text(fake, failed_ask)
    if fail_text.startswith("⏳"):
        fail_text = str(
            (
                await fake.wait_for(
                    "sendMessage",
                    lambda c: (
                        replied_to(c) == failed_ask["message_id"] and "❌" in c.params["text"]
                    ),
                )
            ).params["text"]
        )
    refund_call = await fake.wait_for(
        "sendMessage",
        lambda c: replied_to(c) == refund_ask["message_id"] and "❌" in c.params["text"],
    )
    assert fail_text.startswith("❌ Nano Banana could not make this image")
    assert "You were not charged." in fail_text
    assert fail_text.endswith('\n<a href="tg://user?id=42">Ann &lt;3</a>')
    refund_text = refund_call.params["text"]
    assert refund_text.startswith("❌ Veo 3.1 Fast could not make this video")
    assert "was refunded" in refund_text
    assert refund_text.endswith('<a href="tg://user?id=43">Bob</a>')
    assert buttons(refund_call) == [("🔁 Reroll", f"rr:{refunded.id}")]
    # Both status lines were removed; nothing was uploaded.
    deleted = {c.params["message_id"] for c in fake.sent("deleteMessage")}
    assert {int(failed.status_message_id or 0), int(refunded.status_message_id or 0)} <= deleted
    assert fake.sent("sendPhoto") == [] and fake.sent("sendVideo") == []


async def test_retry_after_inside_the_rate_limiter_delivers_once(open_bed: OpenBed) -> None:
    # The adapter's own FloodControl (no rate_limiter given) waits out the 429 and retries.
    async with open_bed(adapter_kwargs={"rate_limiter": None}) as bed:
        fake = bed.fake
        fake.fail_next("sendPhoto", status=429, retry_after=1)
        ask = fake.send_text(bed.group, bed.ann, "/imagine a storm over the sea")

        job = await bed.wait_delivered((await bed.job_for(ask)).id)

        assert [c.status for c in fake.calls if c.method == "sendPhoto"] == [429, 200]
        assert len(fake.sent("sendPhoto")) == 1 and fake.sent("sendDocument") == []
        assert job.delivery is Delivery.DELIVERED and job.delivery_attempts == 1


async def test_retry_after_escaping_is_retried_without_resending(
    open_bed: OpenBed, caplog: pytest.LogCaptureFixture
) -> None:
    # No retries in PTB: the 429 on the upload fails the delivery; the notifier tries again
    # after retry_after. A 429 is a pause, not a refusal: no fallback to another way, and
    # the status line is left alone (it goes when the photo is there).
    limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=0)
    caplog.set_level(logging.INFO)
    async with open_bed(adapter_kwargs={"rate_limiter": limiter}) as bed:
        fake = bed.fake
        fake.fail_next("sendPhoto", status=429, retry_after=1)
        ask = fake.send_text(bed.group, bed.ann, "/imagine a quiet harbour")

        job = await bed.wait_delivered((await bed.job_for(ask)).id, timeout=10)

        assert job.delivery is Delivery.DELIVERED and job.delivery_attempts == 2
        assert [c.status for c in fake.calls if c.method == "sendPhoto"] == [429, 200]
        assert fake.sent("sendDocument") == []
        assert not [c for c in fake.sent("editMessageText") if "📤" in c.params["text"]]
        assert len(fake.sent("deleteMessage")) == 1
        assert any(
            "delivery failed (Telegram flood control (1 s)); retry in 1.0 s" in r.getMessage()
            for r in caplog.records
        )


async def test_blocked_bot_makes_the_job_undeliverable(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendPhoto", status=403)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a closed door")
    job = await bed.wait_delivered((await bed.job_for(ask)).id)
    assert job.delivery is Delivery.UNDELIVERABLE and job.delivery_attempts == 1
    assert fake.sent("sendPhoto") == []


async def test_over_the_upload_limit_sends_a_link(open_bed: OpenBed) -> None:
    async with open_bed(telegram_upload_limit_mb=0) as bed:
        fake = bed.fake
        ask = fake.send_text(bed.group, bed.ann, "/imagine a tiny planet")
        job = await bed.wait_delivered((await bed.job_for(ask)).id)

        link = await fake.wait_for("sendMessage", lambda c: "📎" in c.params["text"])
        assert link.params["text"] == (
            "Nano Banana · “a tiny planet”\n"
            '<a href="tg://user?id=42">Ann &lt;3</a>\n\n'
            f"📎 This image is {_size_text(job, bed)}, over the 0 MB Telegram lets bots "
            "upload, so here is a link instead (it works for a limited time):\n"
            f"{job.result_urls[0]}"
        )
        assert replied_to(link) == ask["message_id"]
        assert [t for t, _ in buttons(link)] == ["🔁 Reroll", "🎬 Animate", "🔍 4K"]
        assert fake.sent("sendPhoto") == [] and fake.sent("sendDocument") == []


def test_link_note_without_a_known_size() -> None:
    # A result too large for us to fetch at all comes with no size.
    assert link_note(Kind.VIDEO, None, 50) == (
        "📎 This video is too large, over the 50 MB Telegram lets bots upload, "
        "so here is a link instead (it works for a limited time):"
    )


def _size_text(job: Job, bed: Bed) -> str:
    from bot.messages import human_size

    path = bed.core.media.local_result(job.id)
    assert path is not None
    return human_size(path.stat().st_size)


async def test_delivery_survives_a_restart(open_bed: OpenBed) -> None:
    async with open_bed() as first:
        fake, sandbox = first.fake, first.sandbox
        sandbox.script_next(duration=1.5)
        ask = fake.send_text(first.group, first.ann, "/video a train leaving at night")
        status = await fake.wait_for("sendMessage")
        job = await first.job_for(ask)
        await wait_for_value(
            lambda: first.core.store.recent(5),
            lambda jobs: next((j for j in jobs if j.upstream_task_id), None),
            5,
        )
    assert fake.sent("sendVideo") == []  # the bot went down before the video was ready

    async with open_bed() as second:
        done = await second.wait_delivered(job.id, timeout=10)
        video = await fake.wait_for("sendVideo")
        assert done.delivery is Delivery.DELIVERED
        assert video.chat_id == GROUP_ID and replied_to(video) == ask["message_id"]
        assert len(fake.sent("sendVideo")) == 1
        deleted = await fake.wait_for("deleteMessage")
        assert deleted.params["message_id"] == status.result["message_id"]
        assert len(sandbox.create_calls()) == 1  # the job was followed, never sent again


# -- secrets -----------------------------------------------------------------------------------


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The service's own logging setup at DEBUG, with caplog seeing every record."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    noisy = ("httpx", "httpcore", "aiohttp.access", "discord.gateway", "discord.http")
    levels = {name: logging.getLogger(name).level for name in noisy}
    setup_logging("DEBUG", [TOKEN])
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_token_never_reaches_the_gateway_or_the_logs(
    open_bed: OpenBed,
    app_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with open_bed() as bed:
        fake = bed.fake
        ask = fake.send_photo(bed.group, bed.ann, jpeg(5), caption="/imagine paint it gold")
        reply_msg = fake.send_text(
            bed.group,
            bed.bob,
            "/video make it spin",
            reply_to=fake.send_document(bed.group, bed.bob, PNG_1PX, mime_type="image/png"),
        )
        for message in (ask, reply_msg):
            await bed.wait_delivered((await bed.job_for(message)).id)
        assert len(bed.sandbox.create_calls()) == 2
        no_secret_in(bed.sandbox, TOKEN)
        for job in await bed.core.store.recent(10):
            assert TOKEN not in json.dumps([i.to_dict() for i in job.images])
    records = app_logs.records
    assert any("telegram: connected as @genrelay_bot" in r.getMessage() for r in records)
    assert any("-> job" in r.getMessage() for r in records)
    # PTB logs its base URLs (with the token) at DEBUG: the core's filter redacts them.
    assert any("Bot API File URL" in r.getMessage() for r in records)
    # What was written is clean. (A record formatted again later is not always: PTB logs
    # getFile's result dict lazily and then rewrites its file_path into the full file URL.)
    assert "Bot API File URL" in app_logs.text and TOKEN not in app_logs.text
    for record in records:
        assert TOKEN not in (record.exc_text or "")
        if record.name.startswith("adapters."):
            assert TOKEN not in record.getMessage()
            assert "/bot" not in record.getMessage()  # no Bot API or file URL of ours
    assert TOKEN not in capsys.readouterr().err
    assert TOKEN not in (tmp_path / "genrelay.db").read_bytes().decode("latin-1")


# -- restarts, duplicates and the status line (nothing lost, nothing twice) ---------------------


async def logged(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 5.0) -> None:
    """Wait until a log line containing `text` was written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(text in r.getMessage() for r in caplog.records):
        assert loop.time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.02)


async def jobs_for(bed: Bed, message: JSONDict) -> list[Job]:
    key = str(message["message_id"])
    return [j for j in await bed.core.store.recent(50) if j.origin.message_id == key]


def status_lines(fake: FakeTelegram, message: JSONDict) -> list[Call]:
    """Our "⏳ …" replies to `message`."""
    return [
        c
        for c in fake.sent("sendMessage")
        if answers(message)(c) and str(c.params["text"]).startswith("⏳")
    ]


async def test_a_photo_request_cut_off_while_downloading_is_made_once_after_a_restart(
    open_bed: OpenBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached = asyncio.Event()

    def cut(name: str) -> None:  # the handler ends here, as a kill would end the process
        if name == "photo_downloading":
            reached.set()
            raise asyncio.CancelledError

    monkeypatch.setattr(telegram_generate, "crash_point", cut)
    async with open_bed() as bed:
        fake = bed.fake
        ask = fake.send_photo(bed.group, bed.ann, jpeg(1), caption="/imagine make it blue")
        await asyncio.wait_for(reached.wait(), 5)
        assert await jobs_for(bed, ask) == []
    # The first process told Telegram it had the update (getUpdates' next offset, also on
    # stop): Telegram will not send it again; only our inbox still has it.
    assert fake._updates == []
    monkeypatch.undo()

    async with open_bed() as bed:
        job = await bed.wait_delivered((await bed.job_for(ask)).id)
        assert job.state is JobState.SUCCEEDED
        assert [j.id for j in await jobs_for(bed, ask)] == [job.id]
        assert len(bed.sandbox.create_calls()) == 1
        assert len(fake.sent("sendPhoto")) == 1
        assert len(status_lines(fake, ask)) == 1
        assert await bed.core.store.inbox_pending(f"telegram:{TOKEN.partition(':')[0]}") == []


async def test_a_status_line_whose_id_was_not_saved_is_never_posted_twice(
    open_bed: OpenBed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_bed() as bed:
        fake = bed.fake
        bed.sandbox.script_next(duration=1.5)  # still running when this process ends
        posted = asyncio.Event()

        async def cut(job_id: str, message_id: str) -> None:  # killed before the id is saved
            posted.set()
            raise asyncio.CancelledError

        monkeypatch.setattr(bed.core.service, "attach_status_message", cut)
        ask = fake.send_text(bed.group, bed.ann, "/imagine a quiet harbour")
        await asyncio.wait_for(posted.wait(), 5)
        [job] = await jobs_for(bed, ask)

        async def sent_upstream() -> list[Job]:
            stored = await bed.core.store.get(job.id)
            return [stored] if stored is not None and stored.upstream_task_id else []

        stored = await wait_for_value(sent_upstream, lambda jobs: jobs[0] if jobs else None, 5)
        assert stored.status_message_id is None and stored.status_claimed_at is not None

    async with open_bed() as bed:  # the update is replayed; the job runs on and ends
        done = await bed.wait_delivered(job.id)
        await logged(caplog, "its request (telegram:")
        assert done.state is JobState.SUCCEEDED and done.delivery is Delivery.DELIVERED
        assert [j.id for j in await jobs_for(bed, ask)] == [job.id]
        assert len(status_lines(fake, ask)) == 1  # the one from before the crash, no second
        assert len(fake.sent("sendPhoto")) == 1
        assert len(bed.sandbox.create_calls()) == 1


async def test_an_update_delivered_twice_makes_one_job(
    open_bed: OpenBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_bed() as bed:
        fake = bed.fake
        ask = fake.send_text(bed.group, bed.ann, "/imagine a tin robot")
        job = await bed.wait_delivered((await bed.job_for(ask)).id)
        async with bed.core.store.db.execute("SELECT item_id, done_at FROM inbox") as cur:
            [(update_id, done_at)] = [tuple(r) for r in await cur.fetchall()]
        assert done_at is not None
        # The same message again, in an update of its own.
        fake.push_update({"message": dict(ask)})
        await logged(caplog, f"job {job.id}: its request (telegram:{GROUP_ID}:")

    async with open_bed() as bed:  # a new process, and Telegram sends the first update again
        fake.push_update({"update_id": update_id, "message": dict(ask)})
        await logged(caplog, "1 update(s) had come before; handled once")
        again = fake.send_text(bed.group, bed.ann, "/imagine a tin robot, again")
        await bed.wait_delivered((await bed.job_for(again)).id)
        assert [j.id for j in await jobs_for(bed, ask)] == [job.id]
        assert len(status_lines(fake, ask)) == 1
        assert len(bed.sandbox.create_calls()) == 2  # the first and the new one


async def test_a_status_line_telegram_answered_garbled_never_says_nothing_was_made(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    fake = bed.fake
    name, send = fake._handlers["sendmessage"]

    async def garbled(params: JSONDict, files: Any) -> Any:
        fake._handlers["sendmessage"] = (name, send)
        await send(params, files)  # Telegram posted it, then answered what PTB cannot read
        return {"message_id": "not a message"}

    fake._handlers["sendmessage"] = (name, garbled)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a glass whale")
    job = await bed.wait_delivered((await bed.job_for(ask)).id)
    assert job.state is JobState.SUCCEEDED and job.delivery is Delivery.DELIVERED
    assert len(fake.sent("sendPhoto")) == 1  # the result still came
    texts = [str(c.params["text"]) for c in fake.sent("sendMessage")]
    assert not [t for t in texts if "nothing was made" in t or "not charged" in t]
    assert len(status_lines(fake, ask)) == 1  # unknown whether it showed: never a second
    assert any("status line not shown" in r.getMessage() for r in caplog.records)


async def test_a_button_from_another_chat_is_refused_and_costs_nothing(bed: Bed) -> None:
    fake = bed.fake
    ask = fake.send_text(bed.group, bed.ann, "/imagine a secret garden")
    await fake.wait_for("sendPhoto", timeout=8)
    parent = await bed.wait_delivered((await bed.job_for(ask)).id)
    other = fake.group(-1005555555555, "Other club")
    elsewhere = fake.send_text(other, bed.bob, "hello")
    since = len(fake.calls)
    for action in ("rr", "an", "4k"):
        fake.push_update(
            {
                "callback_query": {
                    "id": f"cbq-forged-{action}",
                    "from": bed.bob,
                    "chat_instance": "y",
                    "message": elsewhere,
                    "data": f"{action}:{parent.id}",
                }
            }
        )
        answer = await fake.wait_for(
            "answerCallbackQuery",
            lambda c, a=action: c.params["callback_query_id"] == f"cbq-forged-{a}",  # type: ignore[misc]
            since=since,
        )
        assert answer.params["text"] == (
            "That button is for a job from another chat, so it does nothing here."
        )
        assert answer.params["show_alert"] is True
    assert len(await bed.core.store.recent(50)) == 1  # nothing recorded, nothing charged
    assert len(bed.sandbox.create_calls()) == 1
    assert fake.sent("sendMessage", chat_id=other["id"]) == []


async def test_an_album_still_being_collected_when_the_process_stops_is_made_after_a_restart(
    open_bed: OpenBed,
) -> None:
    slow = {"adapter_kwargs": {"album_debounce_s": 60.0}}
    async with open_bed(**slow) as bed:
        fake = bed.fake
        first = fake.send_photo(
            bed.group, bed.ann, jpeg(1), caption="/imagine two as one", media_group_id="alb-9"
        )
        fake.send_photo(bed.group, bed.ann, jpeg(2), media_group_id="alb-9")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(bed.adapter._album_updates) < 2:  # both photos wait in the collector
            assert loop.time() < deadline, "the album never reached the collector"
            await asyncio.sleep(0.02)
        assert await jobs_for(bed, first) == []
    assert fake._updates == []  # Telegram was told we have both

    async with open_bed() as bed:
        job = await bed.wait_delivered((await bed.job_for(first)).id)
        assert len(job.images) == 2 and job.state is JobState.SUCCEEDED
        [create] = bed.sandbox.create_calls()
        images = [base64.b64decode(u.split(",", 1)[1]) for u in create.json["images"]]
        assert images == [jpeg(1), jpeg(2)]
        assert len(await jobs_for(bed, first)) == 1
        assert await bed.core.store.inbox_pending(f"telegram:{TOKEN.partition(':')[0]}") == []


@pytest.mark.parametrize("point", ["update_received", "photo_downloading"])
async def test_a_process_killed_while_handling_a_photo_request_loses_nothing(
    open_bed: OpenBed, fake: FakeTelegram, sandbox: SandboxGateway, tmp_path: Path, point: str
) -> None:
    """A real `genrelay run`, SIGKILLed at a crash point; then a new process on its store."""
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": fake.token,
        "TELEGRAM_API_BASE_URL": fake.api_base,
        "TELEGRAM_FILE_BASE_URL": fake.file_base,
        "AA_BASE_URL": sandbox.base_url,
        "AA_API_KEY": API_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'genrelay.db'}",
        "DATA_DIR": str(tmp_path / "data"),
        "HTTP_PORT": "0",
        "GENRELAY_CRASH_AT": point,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await fake.wait_for("getUpdates", timeout=20)
        group, ann = fake.group(GROUP_ID, "Art club"), fake.user(42, "Ann <3", "ann")
        ask = fake.send_photo(group, ann, jpeg(1), caption="/imagine make it green")
        assert await asyncio.wait_for(process.wait(), 20) == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    async with open_bed() as bed:
        job = await bed.wait_delivered((await bed.job_for(ask)).id)
        assert job.state is JobState.SUCCEEDED
        assert [j.id for j in await jobs_for(bed, ask)] == [job.id]
        assert len(bed.sandbox.create_calls()) == 1
        assert len(fake.sent("sendPhoto")) == 1


async def test_shutting_down_leaves_new_updates_for_the_next_process(
    open_bed: OpenBed, fake: FakeTelegram
) -> None:
    async with open_bed() as bed:
        chat = fake.private_chat(bed.ann)
        first = fake.send_text(chat, bed.ann, "/help")
        await reply_text(fake, first)  # taken while running
        await bed.adapter.stop_intake()  # SIGTERM: no more updates
        assert not bed.adapter.connected  # the updater stopped (/readyz says not ready)
        later = fake.send_text(chat, bed.ann, "/start")
    assert not [c for c in fake.calls if c.method == "sendMessage" and answers(later)(c)]
    assert [u["message"]["message_id"] for u in fake._updates] == [later["message_id"]]
    async with open_bed():  # the next process answers it
        assert (await reply_text(fake, later)).startswith("👋 Hi!")


# -- fallbacks: an upload Telegram refuses goes another way ------------------------------------

IMAGE_PROCESS_FAILED = "Bad Request: IMAGE_PROCESS_FAILED"
PHOTO_INVALID_DIMENSIONS = "Bad Request: PHOTO_INVALID_DIMENSIONS"
NOT_POSTED = "⚠️ I couldn't post the result here; it's kept — use /history to get it."


def statuses(fake: FakeTelegram, method: str) -> list[int]:
    return [c.status for c in fake.calls if c.method == method]


async def result_link(fake: FakeTelegram) -> Call:
    return await fake.wait_for("sendMessage", lambda c: "📎" in c.params["text"])


async def test_a_photo_telegram_cannot_process_goes_as_a_document(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendPhoto", status=400, description=IMAGE_PROCESS_FAILED)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a glass bird")
    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    assert job.delivery is Delivery.DELIVERED and job.delivery_attempts == 1
    assert statuses(fake, "sendPhoto") == [400]  # a refusal: not tried twice
    [document] = fake.sent("sendDocument")
    assert replied_to(document) == ask["message_id"]
    assert document.params["caption"] == (
        'Nano Banana · “a glass bird”\n<a href="tg://user?id=42">Ann &lt;3</a>'
    )
    # A document is the original already: no 📎 Original under it.
    assert [t for t, _ in buttons(document)] == ["🔁 Reroll", "🎬 Animate", "🔍 4K"]
    assert document.upload is not None and document.upload[1].startswith(PNG_SIGNATURE)
    await fake.wait_for("deleteMessage")  # the status line goes, as after a photo
    assert len(fake.sent("sendMessage")) == 1


async def test_a_refused_photo_and_document_become_a_link(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendPhoto", status=400, description=PHOTO_INVALID_DIMENSIONS)
    fake.fail_next("sendDocument", status=400, description=IMAGE_PROCESS_FAILED)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a very tall tower")
    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    assert job.delivery is Delivery.DELIVERED
    assert statuses(fake, "sendPhoto") == [400] and statuses(fake, "sendDocument") == [400]
    link = await result_link(fake)
    assert link.params["text"] == (
        "Nano Banana · “a very tall tower”\n"
        '<a href="tg://user?id=42">Ann &lt;3</a>\n\n'
        "📎 Telegram wouldn't take this image as an upload, so here is a link instead "
        "(it works for a limited time):\n"
        f"{job.result_urls[0]}"
    )
    assert replied_to(link) == ask["message_id"]
    assert [t for t, _ in buttons(link)] == ["🔁 Reroll", "🎬 Animate", "🔍 4K"]
    await fake.wait_for("deleteMessage")


async def test_a_file_too_large_for_telegram_goes_straight_to_a_link(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendPhoto", status=413, description="Request Entity Too Large")
    ask = fake.send_text(bed.group, bed.ann, "/imagine a huge mural")
    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    assert job.delivery is Delivery.DELIVERED
    assert statuses(fake, "sendPhoto") == [413]
    assert statuses(fake, "sendDocument") == []  # the same bytes would be too large again
    link = await result_link(fake)
    assert "📎 Telegram wouldn't take this image as an upload" in link.params["text"]
    assert link.params["text"].endswith(job.result_urls[0])


async def test_a_5xx_is_tried_once_more_then_the_next_way(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendPhoto", status=500)
    first = fake.send_text(bed.group, bed.ann, "/imagine a lantern")
    one = await bed.wait_delivered((await bed.job_for(first)).id)
    assert one.delivery is Delivery.DELIVERED
    assert statuses(fake, "sendPhoto") == [500, 200]  # a hiccup: the photo, at once
    assert fake.sent("sendDocument") == []

    fake.fail_next("sendPhoto", status=502, count=2)
    second = fake.send_text(bed.group, bed.ann, "/imagine a second lantern")
    two = await bed.wait_delivered((await bed.job_for(second)).id)
    assert two.delivery is Delivery.DELIVERED and two.delivery_attempts == 1
    assert statuses(fake, "sendPhoto") == [500, 200, 502, 502]
    [document] = fake.sent("sendDocument")
    assert replied_to(document) == second["message_id"]


async def test_a_video_telegram_refuses_goes_as_a_document(bed: Bed) -> None:
    fake = bed.fake
    fake.fail_next("sendVideo", status=400, description="Bad Request: VIDEO_FILE_INVALID")
    ask = fake.send_text(bed.group, bed.ann, "/video a paper boat on a lake")
    job = await bed.wait_delivered((await bed.job_for(ask)).id, timeout=10)

    assert job.delivery is Delivery.DELIVERED
    assert statuses(fake, "sendVideo") == [400]
    [document] = fake.sent("sendDocument")
    assert replied_to(document) == ask["message_id"]
    assert [t for t, _ in buttons(document)] == ["🔁 Reroll"]


async def test_when_every_way_fails_the_status_says_so(bed: Bed) -> None:
    fake, sandbox = bed.fake, bed.sandbox
    sandbox.script_next(duration=0.5)
    ask = fake.send_text(bed.group, bed.ann, "/imagine a locked room")
    status = await fake.wait_for("sendMessage", answers(ask))
    rights = "Bad Request: not enough rights to send {} to the chat"
    fake.fail_next("sendPhoto", status=400, description=rights.format("photos"))
    fake.fail_next("sendDocument", status=400, description=rights.format("documents"))
    fake.fail_next("sendMessage", status=400, description=rights.format("text messages"))

    job = await bed.wait_delivered((await bed.job_for(ask)).id)

    assert job.state is JobState.SUCCEEDED
    assert job.delivery is Delivery.UNDELIVERABLE and job.delivery_attempts == 1
    assert statuses(fake, "sendPhoto") == [400] and statuses(fake, "sendDocument") == [400]
    said = await fake.wait_for("editMessageText", lambda c: c.params["text"] == NOT_POSTED)
    assert said.params["message_id"] == status.result["message_id"]
    assert "reply_markup" not in said.params
    assert fake.messages[(GROUP_ID, status.result["message_id"])]["text"] == NOT_POSTED
    assert fake.sent("deleteMessage") == []  # the status line stays, with what to do


async def test_a_delivery_given_up_after_its_attempts_says_so(open_bed: OpenBed) -> None:
    limiter = FloodControl(overall_max_rate=0, group_max_rate=0, max_retries=0)
    async with open_bed(delivery_max_attempts=2, adapter_kwargs={"rate_limiter": limiter}) as bed:
        fake = bed.fake
        fake.fail_next("sendPhoto", status=429, retry_after=1, count=2)
        ask = fake.send_text(bed.group, bed.ann, "/imagine a busy harbour")
        status = await fake.wait_for("sendMessage", answers(ask))

        job = await bed.wait_delivered((await bed.job_for(ask)).id, timeout=10)

        assert job.delivery is Delivery.UNDELIVERABLE and job.delivery_attempts == 2
        assert statuses(fake, "sendPhoto") == [429, 429]
        assert fake.sent("sendDocument") == []  # a 429 is a pause, never a refusal
        said = await fake.wait_for("editMessageText", lambda c: c.params["text"] == NOT_POSTED)
        assert said.params["message_id"] == status.result["message_id"]


async def test_a_result_that_waits_to_be_posted_again_says_so(bed: Bed) -> None:
    fake, sandbox = bed.fake, bed.sandbox
    sandbox.inject_fault("GET", "/files/", status=503)  # our copy of the result: not yet
    ask = fake.send_text(bed.group, bed.ann, "/imagine a slow download")
    status = await fake.wait_for("sendMessage", answers(ask))

    waiting = await fake.wait_for("editMessageText", lambda c: "📤" in c.params["text"])
    job = await bed.wait_delivered((await bed.job_for(ask)).id, timeout=10)

    assert waiting.params["text"] == (
        "📤 Your image is ready, but I couldn't post it yet. I'll try again shortly."
    )
    assert waiting.params["message_id"] == status.result["message_id"]
    assert job.delivery is Delivery.DELIVERED and job.delivery_attempts == 2
    assert len(fake.sent("sendPhoto")) == 1
    deleted = await fake.wait_for("deleteMessage")
    assert deleted.params["message_id"] == status.result["message_id"]


async def test_an_upload_without_an_answer_is_sent_at_most_twice(
    fake: FakeTelegram, open_bed: OpenBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a timeout the photo may be in the chat: one more try, then a link, never a
    # document (that would be the same image twice).
    real = telegram_adapter.AiohttpRequest

    def quick(**kwargs: Any) -> Any:
        if "media_write_timeout" in kwargs:
            kwargs["read_timeout"] = 1.0
        return real(**kwargs)

    monkeypatch.setattr(telegram_adapter, "AiohttpRequest", quick)
    for _ in range(2):  # Telegram takes the photo, but answers too late
        fake.on_next("sendPhoto", lambda call: asyncio.sleep(2.5))
    async with open_bed() as bed:
        ask = fake.send_text(bed.group, bed.ann, "/imagine a shy cat")
        job = await bed.wait_delivered((await bed.job_for(ask)).id, timeout=15)

        assert job.delivery is Delivery.DELIVERED and job.delivery_attempts == 1
        assert len([c for c in fake.calls if c.method == "sendPhoto"]) == 2
        assert [c for c in fake.calls if c.method == "sendDocument"] == []
        link = await result_link(fake)
        assert (
            "📎 Telegram was too slow to take this image. If it isn't above, here is a link "
            "(it works for a limited time):\n"
        ) in link.params["text"]


async def test_a_result_waiting_for_budget_stays_pending_and_is_sent_after_a_restart(
    open_bed: OpenBed,
) -> None:
    # One message a minute in the group: the status line takes it, the photo waits for
    # budget. A process killed then leaves what the store holds now: a pending delivery.
    limiter = FloodControl(overall_max_rate=0, group_max_rate=1, group_time_period=60)
    async with open_bed(adapter_kwargs={"rate_limiter": limiter}) as first:
        fake = first.fake
        ask = fake.send_text(first.group, first.ann, "/imagine a queue of ducks")
        await fake.wait_for("sendMessage", answers(ask))
        job = await first.job_for(ask)

        async def waiting() -> list[Job]:
            stored = await first.core.store.get(job.id)
            return (
                [stored] if stored and limiter.waiting and first.core.notifier._delivering else []
            )

        stored = await wait_for_value(waiting, lambda jobs: jobs[0] if jobs else None, 8)
        assert stored.state is JobState.SUCCEEDED
        assert stored.delivery is Delivery.PENDING and stored.delivery_attempts == 0
        assert stored.next_delivery_at is not None  # a lease: another process takes it later
        assert fake.sent("sendPhoto") == []

    async with open_bed() as second:
        done = await second.wait_delivered(job.id, timeout=10)
        assert done.delivery is Delivery.DELIVERED
        [photo] = fake.sent("sendPhoto")
        assert replied_to(photo) == ask["message_id"]


async def test_a_status_delete_a_killed_process_owed_is_done_by_the_next(
    open_bed: OpenBed, fake: FakeTelegram, make_settings: Callable[..., Settings]
) -> None:
    """The result went out, the status line's delete waited for the chat's budget, and the
    process was killed: the next holder of Telegram deletes it (no "80%" left forever)."""
    fake.group(GROUP_ID, "Art club")
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{fake.api_base}{fake.token}/sendMessage",
            json={"chat_id": GROUP_ID, "text": "🎨 Nano Banana… 80%"},
        )
    status_id = answer.json()["result"]["message_id"]
    assert (GROUP_ID, status_id) in fake.messages
    job = Job(
        id="owed1",
        kind=Kind.IMAGE,
        model="nanobanana",
        prompt="a lighthouse",
        origin=Origin(
            platform="telegram",
            chat_id=str(GROUP_ID),
            user_id="42",
            user_name="Ann",
            message_id="5",
        ),
        state=JobState.SUCCEEDED,
        delivery=Delivery.DELIVERED,
        status_message_id=str(status_id),
        created_at=1.0,
        updated_at=1.0,
    )
    async with SqliteJobStore(make_settings().database_path) as store:
        await store.create(job)
        await store.owe_status_drop("owed1", 2.0)
        assert [j.id for j in await store.owed_status_drops("telegram")] == ["owed1"]
    async with open_bed() as bed:
        async with asyncio.timeout(10):
            while await bed.core.store.owed_status_drops("telegram"):
                await asyncio.sleep(0.02)
        assert (GROUP_ID, status_id) not in bed.fake.messages
        deletes = [c for c in bed.fake.calls if c.method == "deleteMessage"]
        assert [int(c.params["message_id"]) for c in deletes] == [status_id]
