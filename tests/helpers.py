"""Small helpers shared by the core tests."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bot.app import Core
from bot.models import Delivery, GenerationRequest, Job, Kind, Origin, ReferenceImage
from bot.ports import ResultFile

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def jpeg_bytes(n: int = 0, size: tuple[int, int] = (16, 12)) -> bytes:
    """A real JPEG that decodes, distinct per n (its colour)."""
    out = io.BytesIO()
    Image.new("RGB", size, (n * 37 % 256, n * 91 % 256, 200)).save(out, "JPEG", quality=90)
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """JPEG magic bytes and a real header, then the picture cut off: it does not decode."""
    whole = jpeg_bytes(1, (64, 64))
    return whole[: len(whole) // 2]


class RecordingSink:
    """A DeliverySink that remembers what it was given (the console sink's twin for tests)."""

    def __init__(self, platform: str = "test", *, fail_times: int = 0) -> None:
        self.platform = platform
        self.progressed: list[tuple[str, str, int]] = []
        self.delivered: list[tuple[Job, list[ResultFile]]] = []
        self.fail_times = fail_times
        self.attempts = 0
        self.event = asyncio.Event()

    async def progress(self, job: Job) -> str | None:
        self.progressed.append((job.id, job.state.value, job.progress))
        return None

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        from bot.errors import DeliveryError

        self.attempts += 1
        if self.attempts <= self.fail_times:
            raise DeliveryError("the chat is having a bad day", retry_after=0.01)
        self.delivered.append((job, list(files)))
        self.event.set()


def origin(platform: str = "test", user: str = "u1", chat: str = "c1") -> Origin:
    return Origin(platform=platform, chat_id=chat, user_id=user, user_name="Ada", message_id="7")


def request(
    prompt: str = "a red fox in fresh snow",
    *,
    kind: Kind = Kind.IMAGE,
    model: str | None = None,
    images: Sequence[ReferenceImage] = (),
    platform: str = "test",
    **options: str,
) -> GenerationRequest:
    return GenerationRequest(
        kind=kind,
        prompt=prompt,
        origin=origin(platform),
        model=model,
        images=tuple(images),
        aspect_ratio=options.get("aspect_ratio"),
        quality=options.get("quality"),
    )


async def wait_delivered(core: Core, job_id: str, timeout: float = 10.0) -> Job:
    """Until the job's delivery is settled (delivered or undeliverable)."""
    async with asyncio.timeout(timeout):
        while True:
            job = await core.store.get(job_id)
            assert job is not None
            if job.delivery in (Delivery.DELIVERED, Delivery.UNDELIVERABLE):
                return job
            await asyncio.sleep(0.02)


def png_file(tmp: Path, name: str = "ref.png") -> Path:
    path = tmp / name
    path.write_bytes(PNG_1PX)
    return path
