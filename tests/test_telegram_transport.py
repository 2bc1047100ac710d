"""AiohttpRequest, the Telegram adapter's HTTP transport, against loopback servers: the
form PTB's parameters and files travel in, timeouts and failures as PTB's errors, and no
Bot API URL (it holds the bot token) in any error."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from adapters.telegram.transport import AiohttpRequest, ServerRefused, Unanswered

TOKEN = "7012345678:AAHsecret-Token_for-genrelay-0123456789"


ANSWERS = {
    "tooLarge": (413, b'{"ok":false,"error_code":413,"description":"Request Entity Too Large"}'),
    "internal": (500, b'{"ok":false,"error_code":500,"description":"Internal Server Error"}'),
    "gateway": (502, b"<html><body>502 Bad Gateway</body></html>"),
    "badRequest": (400, b'{"ok":false,"error_code":400,"description":"Bad Request: X"}'),
}


class Server:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.stall = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "stall":
            await self.stall.wait()
        if method == "drop":  # the connection breaks after the request was read
            await request.read()
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.5)
        if method in ANSWERS:
            status, body = ANSWERS[method]
            return web.Response(status=status, body=body, content_type="application/json")
        form = await request.post()
        fields: dict[str, Any] = {}
        for name, value in form.items():
            if isinstance(value, web.FileField):
                fields[name] = (value.filename, value.content_type, value.file.read())
            else:
                fields[name] = value
        self.seen.append(
            {"content_type": request.content_type, "fields": fields, "agent": request.headers}
        )
        return web.json_response({"ok": True, "result": True})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", srv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield srv, f"http://127.0.0.1:{port}/bot{TOKEN}"
    srv.stall.set()
    await runner.cleanup()


@pytest.fixture
async def request_() -> AsyncIterator[AiohttpRequest]:
    transport = AiohttpRequest(read_timeout=0.3, connect_timeout=0.5)
    await transport.initialize()
    yield transport
    await transport.shutdown()


def data(**params: Any) -> RequestData:
    return RequestData([RequestParameter.from_input(k, v) for k, v in params.items()])


async def test_parameters_go_as_a_form_with_json_values(
    server: tuple[Server, str], request_: AiohttpRequest
) -> None:
    srv, base = server
    status, body = await request_.do_request(
        f"{base}/sendMessage",
        "POST",
        data(chat_id=-100123, text="héllo & <b>", reply_parameters={"message_id": 7}),
    )
    assert (status, json.loads(body)) == (200, {"ok": True, "result": True})
    [seen] = srv.seen
    assert seen["content_type"] == "application/x-www-form-urlencoded"
    assert seen["fields"] == {
        "chat_id": "-100123",
        "text": "héllo & <b>",
        "reply_parameters": '{"message_id": 7}',
    }
    assert seen["agent"]["User-Agent"].startswith("python-telegram-bot")


async def test_files_go_as_multipart_with_their_names(
    server: tuple[Server, str], request_: AiohttpRequest
) -> None:
    srv, base = server
    photo = InputFile(b"\x89PNG fake bytes", filename="café au lait.png", attach=False)
    await request_.do_request(f"{base}/sendPhoto", "POST", data(chat_id=5, photo=photo))
    [seen] = srv.seen
    assert seen["content_type"] == "multipart/form-data"
    assert seen["fields"]["chat_id"] == "5"
    assert seen["fields"]["photo"] == ("café au lait.png", "image/png", b"\x89PNG fake bytes")


async def test_a_request_nobody_answers_times_out_without_its_url(
    server: tuple[Server, str], request_: AiohttpRequest
) -> None:
    _, base = server
    with pytest.raises(TimedOut) as caught:
        await request_.do_request(f"{base}/stall", "POST", data(chat_id=1))
    assert TOKEN not in str(caught.value)


async def test_a_refused_connection_is_a_network_error_without_the_token(
    request_: AiohttpRequest,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError) as caught:
        await request_.do_request(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe", "POST")
    assert not isinstance(caught.value, (TimedOut, Unanswered))  # surely not sent
    assert "aiohttp.ClientConnectorError" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_it_must_be_initialized_and_can_be_again() -> None:
    transport = AiohttpRequest()
    with pytest.raises(RuntimeError, match="not initialized"):
        await transport.do_request("http://127.0.0.1:9/botX/getMe", "POST")
    await transport.initialize()
    await transport.shutdown()
    await transport.initialize()  # PTB may start a bot again after shutting it down
    await transport.shutdown()


async def test_a_connection_that_breaks_is_unanswered(
    server: tuple[Server, str], request_: AiohttpRequest
) -> None:
    _, base = server
    with pytest.raises(Unanswered) as caught:  # it may have arrived
        await request_.do_request(f"{base}/drop", "POST", data(chat_id=1))
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("method", "status", "words"),
    [
        ("tooLarge", 413, "Request Entity Too Large"),
        ("internal", 500, "Internal Server Error"),
        ("gateway", 502, "Bad Gateway (502)"),
    ],
)
async def test_a_5xx_or_413_answer_is_a_server_refusal_with_its_status(
    server: tuple[Server, str], request_: AiohttpRequest, method: str, status: int, words: str
) -> None:
    _, base = server
    with pytest.raises(ServerRefused) as caught:
        await request_.do_request(f"{base}/{method}", "POST", data(chat_id=1))
    assert caught.value.status == status
    assert caught.value.message == words
    assert isinstance(caught.value, NetworkError)  # as PTB would raise it
    # Other answers are PTB's to read.
    answered, body = await request_.do_request(f"{base}/badRequest", "POST", data(chat_id=1))
    assert answered == 400 and b"Bad Request: X" in body
