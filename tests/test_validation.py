"""Bad input is refused before anything is sent, in words a person understands."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image

import bot.media
from bot.app import Core
from bot.errors import MediaError, RequestRejected
from bot.main.wiring import build_catalog
from bot.media import MediaStore
from bot.messages import UNREADABLE_IMAGE, progress_text, result_caption, setting_changed_text
from bot.models import JobState, Kind, ReferenceImage
from sandbox import SandboxGateway
from tests.helpers import (
    PNG_1PX,
    RecordingSink,
    corrupt_jpeg,
    jpeg_bytes,
    request,
    wait_delivered,
)


def img(n: int = 1, **kw: object) -> list[ReferenceImage]:
    return [
        ReferenceImage(ref=f"https://cdn.example/{i}.png", mime="image/png", size=100, **kw)
        for i in range(n)
    ]  # type: ignore[arg-type]


CASES = [
    (
        request("", model="nanobanana"),
        "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”.",
    ),
    (
        request("   ", kind=Kind.VIDEO),
        "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”.",
    ),
    (
        request("hi", kind=Kind.VIDEO, model="sora_studio"),
        "That prompt is 2 characters; Sora Studio needs at least 3.",
    ),
    (
        request("x" * 4001, model="nanobanana"),
        "That prompt is 4,001 characters; the limit is 4,000. Please shorten it.",
    ),
    (
        request("a fox", model="nanobana"),
        "I don't know the model “nanobana”. Did you mean nanobanana or nanobanana_pro? See /models for the list.",
    ),
    (request("a fox", model="dalle"), "I don't know the model “dalle”. See /models for the list."),
    (
        request("a fox", kind=Kind.VIDEO, model="sora_fast", images=img(2)),
        "Sora Fast takes at most 1 reference image; you sent 2. Send fewer, or pick another model.",
    ),
    (
        request("a fox", kind=Kind.VIDEO, model="veo", images=img(3)),
        "Veo 3.1 takes at most 2 reference images; you sent 3. Send fewer, or pick another model.",
    ),
    (
        request("a fox", model="nanobanana", images=img(7)),
        "Nano Banana takes at most 6 reference images; you sent 7. Send fewer, or pick another model.",
    ),
    (
        request("a fox", model="gpt-image-2", images=img(7)),
        "GPT Image 2 takes at most 6 reference images; you sent 7. Send fewer, or pick another model.",
    ),
    (
        request("a fox", kind=Kind.VIDEO, model="veo_fast", aspect_ratio="4:3"),
        "Veo 3.1 Fast takes aspect ratio 16:9 or 9:16, not 4:3.",
    ),
    (
        request("a fox", kind=Kind.VIDEO, model="sora_studio", aspect_ratio="16:9"),
        "Sora Studio does not take an aspect ratio. Describe the framing in your prompt instead.",
    ),
    (
        request(
            "a fox", kind=Kind.VIDEO, model="veo_reference", images=img(1), aspect_ratio="9:16"
        ),
        "Veo 3.1 Reference does not take an aspect ratio. For 9:16, use a full firefly-veo31-ref-* model name.",
    ),
    (
        request("a fox", model="nanobanana", quality="8k"),
        "Nano Banana takes quality 1k, 2k, 4k, hd or ultra, not 8k.",
    ),
    (
        request("a fox", kind=Kind.VIDEO, model="veo", quality="4k"),
        "Veo 3.1 does not take a quality setting.",
    ),
    (
        request(
            "a fox",
            model="nanobanana",
            images=[
                ReferenceImage(ref="https://cdn.example/a.pdf", mime="application/pdf", size=10)
            ],
        ),
        "That file is not an image I can use. Send a JPEG, PNG, WebP or GIF.",
    ),
    (
        request(
            "a fox",
            model="nanobanana",
            images=[
                ReferenceImage(
                    ref="https://cdn.example/big.png", mime="image/png", size=30 * 1024 * 1024
                )
            ],
        ),
        "That image is 30 MB; the limit is 20 MB. Try a smaller one.",
    ),
    (
        request("a dancing robot", kind=Kind.VIDEO, model="veo_reference"),
        "Veo 3.1 Reference needs a photo of your subject: attach one (or reply to one), or use veo_fast for video from text alone.",
    ),
    (
        request("a fox", kind=Kind.IMAGE, model="veo_fast"),
        "Veo 3.1 Fast makes videos; use /video for it, or pick another model from /models.",
    ),
]


@pytest.mark.parametrize(("req", "message"), CASES, ids=[c[1][:40] for c in CASES])
async def test_bad_input_is_refused_with_words_and_no_upstream_call(
    core: Core, sandbox: SandboxGateway, req: object, message: str
) -> None:
    with pytest.raises(RequestRejected) as info:
        await core.service.submit(req)  # type: ignore[arg-type]
    assert info.value.message == message
    await core.tracker.drain()
    assert sandbox.requests == []
    (row,) = await core.store.recent(5)
    assert row.state is JobState.REJECTED
    assert row.error_message == message
    assert row.charged_usd == 0


async def test_hosting_refuses_an_image_that_does_not_decode(core: Core) -> None:
    for data in (corrupt_jpeg(), b"\xff\xd8\xff\xe0" + b"jpeg" * 20, PNG_1PX[:40]):
        with pytest.raises(RequestRejected) as info:
            await core.media.host(data, filename="broken.jpg")
        assert info.value.message == (
            "That photo could not be read as an image; please send it again as a JPEG or PNG."
        )
    assert not core.media.hosted_dir.exists() or not any(core.media.hosted_dir.iterdir())
    assert (await core.media.host(jpeg_bytes(3), filename="fine.jpg")).mime == "image/jpeg"


async def test_a_decompression_bomb_is_refused(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's MAX_IMAGE_PIXELS is the guard; lowered here so a small file passes it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for size in ((11, 11), (20, 20)):  # past it (a warning), past twice it (an error)
        with pytest.raises(RequestRejected, match="could not be read as an image"):
            await core.media.host(jpeg_bytes(1, size), filename="bomb.jpg")


async def test_hosting_refuses_what_is_not_an_image_or_too_large(core: Core) -> None:
    with pytest.raises(RequestRejected, match="not an image I can use"):
        await core.media.host(b"%PDF-1.7 not a picture", filename="doc.pdf")
    with pytest.raises(RequestRejected, match="That image is 21 MB; the limit is 20 MB"):
        await core.media.host(PNG_1PX + b"\0" * (21 * 1024 * 1024), filename="huge.png")


async def test_a_linked_image_is_downloaded_and_decoded_and_its_url_kept(
    tmp_path: Path,
) -> None:
    """`check_remote` (Discord attachments, the CLI's -i URLs): the network faked at its
    edge, httpx's own MockTransport."""
    served = {"/good.jpg": jpeg_bytes(2), "/cut.jpg": corrupt_jpeg(), "/big.png": b"\0" * 5000}

    def answer(request: httpx.Request) -> httpx.Response:
        data = served.get(request.url.path)
        return httpx.Response(404) if data is None else httpx.Response(200, content=data)

    media = MediaStore(tmp_path, public_base_url=None, max_reference_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        good = await media.check_remote(client, "https://cdn.test/good.jpg", filename="g.jpg")
        assert (good.ref, good.mime, good.size, good.filename) == (
            "https://cdn.test/good.jpg",
            "image/jpeg",
            len(served["/good.jpg"]),
            "g.jpg",
        )
        with pytest.raises(RequestRejected) as info:
            await media.check_remote(client, "https://cdn.test/cut.jpg")
        assert (info.value.message, info.value.code) == (UNREADABLE_IMAGE, "unreadable_image")
        with pytest.raises(RequestRejected, match="That image is 4 KB; the limit is 4 KB"):
            await media.check_remote(client, "https://cdn.test/big.png")
        with pytest.raises(MediaError, match="HTTP 404"):
            await media.check_remote(client, "https://cdn.test/gone.png")
    assert not media.hosted_dir.exists()  # checked, not kept: the URL is what goes upstream


async def test_decodes_run_in_worker_threads_a_few_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pillow decode leaves the event loop, at most `decodes_at_once` at a time."""
    media = MediaStore(tmp_path, public_base_url=None, max_reference_bytes=1 << 20)
    guard = threading.Lock()
    release = threading.Event()
    running = peak = 0
    threads: set[int] = set()

    def held_decode(data: bytes) -> bool:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
        release.wait(30)
        with guard:
            running -= 1
        return True

    monkeypatch.setattr(bot.media, "decodes", held_decode)
    checks = [asyncio.create_task(media.check(jpeg_bytes(n))) for n in range(5)]
    async with asyncio.timeout(10):
        while running < 2:
            await asyncio.sleep(0.01)
    for _ in range(50):  # the other three had every chance to start
        await asyncio.sleep(0)
    assert running == 2
    release.set()
    assert await asyncio.gather(*checks) == ["image/jpeg"] * 5
    assert peak == 2
    assert threading.get_ident() not in threads


async def test_full_firefly_name_is_kept_and_sent_as_is(
    core: Core, sandbox: SandboxGateway
) -> None:
    job = await core.service.submit(
        request(
            "keep the bottle shape", kind=Kind.VIDEO, model="firefly-veo31-ref-9x16", images=img(1)
        )
    )
    assert job.model == "firefly-veo31-ref-9x16"
    await core.tracker.drain()
    spec = core.catalog.resolve(job.model)
    assert spec is not None and spec.code == "veo_reference"


def test_catalog_has_every_model_and_alias(core: Core) -> None:
    codes = {s.code for s in core.catalog.all()}
    assert codes == {
        "sora_studio",
        "sora_fast",
        "veo",
        "veo_fast",
        "veo_reference",
        "gpt-image-2",
        "nanobanana",
        "nanobanana_pro",
    }
    assert core.catalog.get("gemini-2.5-flash-image").code == "nanobanana"
    assert core.catalog.get("gemini-3-pro-image-preview").code == "nanobanana_pro"
    assert core.catalog.get("firefly-veo31-ref-16x9").code == "veo_reference"
    assert core.catalog.get("sora_studio").min_prompt == 3
    assert {s.code: s.max_images for s in core.catalog.all()} == {
        "sora_studio": 1,
        "sora_fast": 1,
        "veo": 2,
        "veo_fast": 2,
        "veo_reference": 2,
        "gpt-image-2": 6,
        "nanobanana": 6,
        "nanobanana_pro": 6,
    }


def test_prices_are_configurable(make_settings: object) -> None:
    settings = make_settings(model_prices="veo=0.9, nanobanana_pro=0.2")  # type: ignore[operator]
    catalog = build_catalog(settings)
    assert catalog.get("veo").price_usd == 0.9
    assert catalog.get("nanobanana_pro").price_usd == 0.2
    assert catalog.get("veo_fast").price_usd == 0.25


# -- what people type: control and bidi characters --------------------------------------------

BAD_CHARS = ("\x00", "\x1b", "\x7f", "\x85", "\u202e", "\u202d", "\u2066", "\u200f", "\ufeff")


async def test_control_and_bidi_characters_never_go_upstream_or_back(
    core: Core, sandbox: SandboxGateway
) -> None:
    sink = RecordingSink()
    core.notifier.register(sink)
    typed = "a red\x00 fox\u202e in\tthe\nsnow\x1b[31m\u2069 👩\u200d💻"
    job = await core.service.submit(request(typed, model="nanobanana"))
    assert job.prompt == "a red fox in the snow[31m 👩\u200d💻"  # tabs, newlines: spaces
    done = await wait_delivered(core, job.id)
    (call,) = sandbox.create_calls()
    assert call.json["prompt"] == job.prompt
    ((delivered, _),) = sink.delivered
    caption = result_caption(delivered, core.catalog)
    assert "a red fox in the snow" in caption
    for shown in (caption, progress_text(done, core.catalog)):
        assert not any(ch in shown for ch in BAD_CHARS)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (
            request("\x00\u202e\x1b\u2066", model="nanobanana"),
            "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”.",
        ),
        (
            request("a fox", model="dal\u202ele\x00"),
            "I don't know the model “dalle”. See /models for the list.",
        ),
        (
            request("a fox", kind=Kind.VIDEO, model="veo_fast", aspect_ratio="4:3\u202e"),
            "Veo 3.1 Fast takes aspect ratio 16:9 or 9:16, not 4:3.",
        ),
    ],
)
async def test_a_refusal_never_echoes_control_characters(
    core: Core, sandbox: SandboxGateway, req: object, message: str
) -> None:
    with pytest.raises(RequestRejected) as info:
        await core.service.submit(req)  # type: ignore[arg-type]
    assert info.value.message == message
    (row,) = await core.store.recent(5)
    assert row.state is JobState.REJECTED and not any(ch in row.prompt for ch in BAD_CHARS)
    assert sandbox.requests == []


async def test_a_setting_name_or_value_is_read_without_control_characters(core: Core) -> None:
    origin = request("x").origin
    changed = await core.service.change_setting(
        origin, "blocked_words\x00", "gore\u202e, spoiler", is_admin=True
    )
    assert setting_changed_text(changed) == "✅ blocked_words: gore, spoiler"
    with pytest.raises(RequestRejected) as info:
        await core.service.change_setting(origin, "colour\u202e", "red", is_admin=True)
    assert info.value.message.startswith("There is no setting “colour”.")
