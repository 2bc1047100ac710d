"""The result files the sandbox serves: small valid PNGs and MP4-looking blobs."""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from sandbox.wire import IMAGE_ASPECT_RATIOS, RESULT_EXPIRES_IN_S

__all__ = ["PNG_LONG_SIDE", "StoredFile", "mp4_bytes", "png_bytes", "result_file"]

PNG_LONG_SIDE = 64

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class StoredFile:
    """A file under ``/files/``; it expires ``expires_in`` seconds after ``created``."""

    data: bytes
    content_type: str
    created: float
    expires_in: float | None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(seed: str, aspect_ratio: str) -> bytes:
    """A small valid RGB PNG: a gradient whose colour depends on ``seed``."""
    ratio = IMAGE_ASPECT_RATIOS.get(aspect_ratio, 1.0)
    if ratio >= 1:
        width, height = PNG_LONG_SIDE, max(round(PNG_LONG_SIDE / ratio), 1)
    else:
        width, height = max(round(PNG_LONG_SIDE * ratio), 1), PNG_LONG_SIDE
    r0, g0, b0 = hashlib.sha256(seed.encode()).digest()[:3]
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(
                (
                    (r0 + x * 255 // width) % 256,
                    (g0 + y * 255 // height) % 256,
                    b0,
                )
            )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows)))
        + _png_chunk(b"IEND", b"")
    )


def _mp4_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4_bytes(seed: str) -> bytes:
    """A tiny ISO-BMFF blob (ftyp, moov/mvhd, mdat): enough to look like an MP4."""
    ftyp = _mp4_box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _mp4_box(
        b"mvhd",
        struct.pack(">IIIII", 0, 0, 0, 1000, 5000)  # version/flags, times, timescale, duration
        + struct.pack(">IH", 0x10000, 0x100)  # rate 1.0, volume 1.0
        + bytes(10)
        + matrix
        + bytes(24)
        + struct.pack(">I", 2),  # next track id
    )
    return ftyp + _mp4_box(b"moov", mvhd) + _mp4_box(b"mdat", f"genrelay {seed}".encode())


def result_file(
    task_id: str, is_video: bool, aspect_ratio: str | None, now: float
) -> tuple[str, StoredFile]:
    """The name and file of a task's result made at ``now``: an MP4, or a PNG that expires."""
    if is_video:
        return f"{task_id}.mp4", StoredFile(mp4_bytes(task_id), "video/mp4", now, None)
    png = png_bytes(task_id, aspect_ratio or "1:1")
    return f"{task_id}.png", StoredFile(png, "image/png", now, RESULT_EXPIRES_IN_S)
