"""The service's own HTTP server against odd requests: hosted names it never gave out, and
requests aiohttp cannot parse. Raw sockets on loopback, so nothing tidies the bytes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.media import MediaStore
from bot.web import WebServer
from tests.helpers import PNG_1PX


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebServer]:
    media = MediaStore(tmp_path, public_base_url=None, max_reference_bytes=1024 * 1024)
    async with WebServer(host="127.0.0.1", port=0, media=media) as server:
        yield server


async def raw(web: WebServer, data: bytes) -> bytes:
    """Send `data` as it is; the server's whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_a_hosted_image_is_served_and_odd_names_are_404(web: WebServer) -> None:
    image = await web.media.host(PNG_1PX, filename="me.png")
    name = image.hosted_name
    assert name is not None
    odd = [
        f"{name}%00.txt",
        f"{name}%00",
        f"%00{name}",
        f"{name}%0a",
        "..%2f..%2fetc%2fpasswd",
        "%2e%2e",
        ".hidden.png",
        f"{name[:-4]}.txt",
        f"{name}.png",
        "%E2%80%AE" + name,
        "x" * 300 + ".png",
    ]
    async with httpx.AsyncClient(base_url=web.base_url) as http:
        ok = await http.get(f"/media/{name}")
        assert ok.status_code == 200 and ok.content == PNG_1PX
        for path in odd:
            assert (await http.get(f"/media/{path}")).status_code == 404, path
    # and as raw bytes, which no client library re-encodes
    answer = await raw(
        web, f"GET /media/{name}%00.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(answer) == 404


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        (
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=["long header", "long request line", "content-length and chunked", "no colon"],
)
async def test_a_malformed_request_gets_a_4xx_and_one_quiet_line(
    web: WebServer, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await raw(web, request_bytes)
    assert 400 <= status_of(answer) < 500
    async with httpx.AsyncClient(base_url=web.base_url) as http:  # still serving
        assert (await http.get("/healthz")).status_code == 200
    server_lines = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert all(r.levelno <= logging.INFO and r.exc_info is None for r in server_lines)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert len([r for r in server_lines if "malformed" in r.getMessage()]) == 1
