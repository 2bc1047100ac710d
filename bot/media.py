"""Files in and out: hosted reference images (never a URL with a secret) and bounded
downloads of results (their URLs expire)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import mimetypes
import re
import secrets
import time
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
from PIL import Image

from bot.constants import DECODES_AT_ONCE, MEDIA_NAME_BYTES, MEDIA_TTL_S
from bot.errors import MediaError, RequestRejected
from bot.models import ReferenceImage
from bot.ports import ResultFile
from bot.refusal_messages import (
    NOT_AN_IMAGE,
    UNREADABLE_IMAGE,
    image_too_large_text,
)

__all__ = [
    "MediaStore",
    "decodes",
    "download",
    "opens",
    "prune_results",
    "result_file",
    "sniff_image",
]

log = logging.getLogger(__name__)

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
# The names `host` gives: token_urlsafe characters and one of _EXT's endings, nothing else.
_HOSTED_NAME = re.compile(r"[A-Za-z0-9_-]{16,64}\.(?:png|jpg|gif|webp)")
# The names of kept results (`<job id>-<index><ext>`, see MediaStore.fetch_result): one plain
# name, no dots but the ending's, no path.
_RESULT_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}(?:\.[A-Za-z0-9]{1,8})?")


def sniff_image(data: bytes) -> str | None:
    """The image type of `data` from its first bytes, or None if it is no image we take."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def opens(data: bytes) -> bool:
    """Whether `data` has an image header Pillow reads, within MAX_IMAGE_PIXELS (the guard
    against decompression bombs: an image past it counts as unreadable, warned about or not).
    Reads the header only, so it is quick enough for the event loop; it runs there because
    `warnings.catch_warnings` is not thread-safe."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)):
                pass
    except (*_UNREADABLE, Image.DecompressionBombWarning):
        return False
    return True


def decodes(data: bytes) -> bool:
    """Whether `data` decodes as a whole image (its first frame), so nothing corrupt is paid
    for. The slow part: `MediaStore.check` runs it in a worker thread, after `opens` (so the
    bomb check here passes without a warning)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (512, 512))  # JPEG: decode every block, at a smaller scale
            image.load()
    except _UNREADABLE:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Downloaded:
    data: bytes | None  # None when over the cap
    size: int | None
    mime: str


async def download(
    client: httpx.AsyncClient, url: str, *, max_bytes: int, timeout_s: float = 60.0
) -> Downloaded:
    """GET `url`, stopping at `max_bytes`. Raises MediaError on HTTP or network failure."""
    try:
        async with client.stream("GET", url, timeout=timeout_s, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise MediaError(f"download failed with HTTP {resp.status_code}")
            mime = resp.headers.get("content-type", "").split(";")[0].strip()
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                return Downloaded(None, int(declared), mime)
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    return Downloaded(None, None, mime)
                chunks.append(chunk)
            return Downloaded(b"".join(chunks), total, mime)
    except httpx.HTTPError as exc:
        raise MediaError(f"download failed ({type(exc).__name__})") from None


class MediaStore:
    """Reference images we host at PUBLIC_BASE_URL/media/<name>, and result files we fetched."""

    def __init__(
        self,
        root: Path,
        *,
        public_base_url: str | None,
        max_reference_bytes: int,
        ttl_s: float = MEDIA_TTL_S,
        decodes_at_once: int = DECODES_AT_ONCE,
    ) -> None:
        self.root = root
        self.public_base_url = public_base_url
        self.max_reference_bytes = max_reference_bytes
        self.ttl_s = ttl_s
        # Decoding runs in worker threads, off the event loop; this many at once, so a
        # burst of big images cannot hold them all decoded in memory together.
        self._decoding = asyncio.Semaphore(decodes_at_once)

    @property
    def hosted_dir(self) -> Path:
        return self.root / "media"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def too_large(self, size: int | None) -> RequestRejected:
        return RequestRejected(
            image_too_large_text(size, self.max_reference_bytes), code="image_too_large"
        )

    async def check(self, data: bytes) -> str:
        """The image type of `data` if we take it (it decodes); raises RequestRejected
        otherwise. The decode runs in a worker thread, `decodes_at_once` at a time."""
        if len(data) > self.max_reference_bytes:
            raise self.too_large(len(data))
        mime = sniff_image(data)
        if mime is None:
            raise RequestRejected(NOT_AN_IMAGE, code="not_an_image")
        if opens(data):
            async with self._decoding:
                whole = await asyncio.to_thread(decodes, data)
        else:
            whole = False
        if not whole:
            log.info("a %s reference image of %d bytes did not decode", mime, len(data))
            raise RequestRejected(UNREADABLE_IMAGE, code="unreadable_image")
        return mime

    async def check_remote(
        self, client: httpx.AsyncClient, url: str, *, filename: str | None = None
    ) -> ReferenceImage:
        """Download `url` (up to the cap) and check it as `check` does; the reference stays
        `url` (for links that carry no secret). Raises MediaError when the download fails,
        RequestRejected when it is too large or no image that decodes."""
        got = await download(client, url, max_bytes=self.max_reference_bytes)
        if got.data is None:
            raise self.too_large(got.size)
        mime = await self.check(got.data)
        return ReferenceImage(ref=url, mime=mime, size=len(got.data), filename=filename)

    async def host(self, data: bytes, *, filename: str | None = None) -> ReferenceImage:
        """Check that `data` is an image within the cap and keep it; raises RequestRejected."""
        mime = await self.check(data)
        name = secrets.token_urlsafe(MEDIA_NAME_BYTES) + _EXT[mime]
        self.hosted_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread((self.hosted_dir / name).write_bytes, data)
        return ReferenceImage(ref=f"media:{name}", mime=mime, size=len(data), filename=filename)

    def hosted_path(self, name: str, *, now: float | None = None) -> Path | None:
        """The file behind /media/<name>, if it exists and has not expired."""
        if not _HOSTED_NAME.fullmatch(name):  # NUL, dots, slashes, odd endings: not ours
            return None
        path = self.hosted_dir / name
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        if (now or time.time()) - mtime > self.ttl_s:
            return None
        return path

    def url_for(self, image: ReferenceImage) -> str:
        """The URL handed to the gateway: a public URL of ours, or a data: URL."""
        name = image.hosted_name
        if name is None:
            return image.ref
        if self.public_base_url:
            return f"{self.public_base_url}/media/{name}"
        path = self.hosted_dir / name
        try:
            data = path.read_bytes()
        except OSError:
            raise MediaError("a reference image we kept has gone") from None
        return f"data:{image.mime};base64,{base64.b64encode(data).decode()}"

    def cleanup(self, now: float | None = None) -> int:
        """Delete hosted images past their time. Returns how many went."""
        now = now or time.time()
        removed = 0
        if not self.hosted_dir.exists():
            return 0
        for path in self.hosted_dir.iterdir():
            try:
                if now - path.stat().st_mtime > self.ttl_s:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def keep_result(self, job_id: str, index: int, data: bytes) -> str:
        """Keep a result that came as bytes, not a link (a gateway's base64 image), where
        `fetch_result` finds it; returns its file: URL, to stand in the job's result_urls."""
        mime = sniff_image(data)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        for old in self.results_dir.glob(f"{job_id}-{index}.*"):
            old.unlink(missing_ok=True)
        path = self.results_dir / f"{job_id}-{index}{_EXT.get(mime or '', '.bin')}"
        path.write_bytes(data)
        return path.resolve().as_uri()

    def local_result(self, job_id: str, index: int = 0) -> Path | None:
        found = sorted(self.results_dir.glob(f"{job_id}-{index}.*"))
        return found[0] if found else None

    async def fetch_result(
        self, client: httpx.AsyncClient, job_id: str, index: int, url: str, *, max_bytes: int
    ) -> ResultFile:
        """Our copy of a result (kept, so a retried delivery does not download again)."""
        ext = Path(urlparse(url).path).suffix.lower()[:6] if not url.startswith("data:") else ""
        path = self.local_result(job_id, index)
        if path is not None:
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return ResultFile(url, path, path.stat().st_size, mime, path.name)
        if not url.startswith(("https://", "http://")):
            # keep_result's file: URLs resolve above; we read no other local file, ever.
            raise MediaError("the result is neither a web link nor a file we still keep")
        got = await download(client, url, max_bytes=max_bytes)
        mime = got.mime or mimetypes.guess_type(url)[0] or "application/octet-stream"
        if not ext:
            ext = mimetypes.guess_extension(mime) or ".bin"
        filename = f"{job_id}-{index}{ext}"
        if got.data is None:
            log.info(
                "result %s of job %s is over %d bytes; sending a link", index, job_id, max_bytes
            )
            return ResultFile(url, None, got.size, mime, filename)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / filename
        path.write_bytes(got.data)
        return ResultFile(url, path, got.size, mime, filename)


def result_file(results_dir: Path, name: str) -> Path | None:
    """The kept result file `name` in `results_dir`, if it is a plain name of ours and a
    regular file there (a symlink out, a path, `..`, an odd name: None)."""
    if not _RESULT_NAME.fullmatch(name):
        return None
    path = results_dir / name
    try:
        if path.resolve().parent != results_dir.resolve() or not path.is_file():
            return None
    except (OSError, RuntimeError):
        return None
    return path


def prune_results(
    results_dir: Path, names: Iterable[str], *, older_than: float, keep: Collection[str] = ()
) -> list[str]:
    """Delete these kept result files (names in `results_dir`, as a session's gallery lists
    them) last written before `older_than` (a time.time()), except the names in `keep`.
    Nothing else in `results_dir` is touched. Returns the names deleted."""
    deleted = []
    for name in dict.fromkeys(names):
        path = result_file(results_dir, name) if name not in keep else None
        if path is None:
            continue
        try:
            if path.stat().st_mtime < older_than:
                path.unlink()
                deleted.append(name)
        except OSError:
            continue
    if deleted:
        log.info("deleted %d kept result files of ended sessions", len(deleted))
    return deleted
