"""python-telegram-bot's HTTP transport on aiohttp (already ours: it serves bot/web.py).

PTB's default transport is httpx. In a burst (100 commands at once: 100 reactions, status
messages and submits on one event loop) httpx spends about four times the CPU per Bot API
request that aiohttp does (`python -m bench.ack`), and that CPU is what stands between a
command arriving and its acknowledgement. `AiohttpRequest` implements PTB's `BaseRequest`
with the same timeouts and errors as PTB's `HTTPXRequest`:

- `connect_timeout` bounds making a connection, `pool_timeout` waiting for a free one,
  `read_timeout` waiting for the answer; a request that uploads a file may take
  `media_write_timeout` more in all (aiohttp has no per-write timeout).
- A timeout is `TimedOut`; a connection that broke during the request `Unanswered`: in
  both, whether Telegram got the request is unknown. A connection that could not be made
  is a plain `NetworkError` (nothing was sent). A 5xx or 413 answer is `ServerRefused`
  (PTB would raise a plain `NetworkError` with the same words): Telegram answered, and
  did not act on it. Their messages never carry the URL: a Bot API URL contains the bot
  token.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

__all__ = ["AiohttpRequest", "ServerRefused", "Unanswered"]

TOO_LARGE = 413  # Request Entity Too Large


class Unanswered(NetworkError):
    """No answer came (the connection broke): the request may have arrived."""


class ServerRefused(NetworkError):
    """Telegram answered 5xx (a failure on its side) or 413 (the request was too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AiohttpRequest(BaseRequest):
    """PTB's `BaseRequest` on an aiohttp `ClientSession`, made in `initialize` (on the
    running loop) and closed in `shutdown`. Defaults as PTB's `HTTPXRequest`."""

    def __init__(
        self,
        *,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self.connection_pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connection_pool_size),
                headers={"User-Agent": self.USER_AGENT},
                # No environment proxies, no cookies: as HTTPXRequest, every call stands alone.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data is not None else None
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        write = _given(write_timeout, self._media_write_timeout if files else self._write_timeout)
        timeout = aiohttp.ClientTimeout(
            # The whole request, only where a file goes up: its writes may take `write`.
            total=_sum(connect, pool, write, read) if files else None,
            connect=_sum(pool, connect),  # aiohttp counts the wait for a free connection here
            sock_connect=connect,
            sock_read=read,
        )
        try:
            async with session.request(
                method, url, data=_body(request_data), timeout=timeout
            ) as response:
                status, payload = response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut(_without_url(exc, url) or "Timed out") from None
        except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {_without_url(exc, url)}") from None
        except aiohttp.ClientError as exc:
            raise Unanswered(f"aiohttp.{type(exc).__name__}: {_without_url(exc, url)}") from None
        if status == TOO_LARGE or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise ServerRefused(status, _described(status, payload))
        return status, payload


def _body(request_data: RequestData | None) -> aiohttp.FormData | None:
    """The request's parameters as a form (a multipart one when files go up), as PTB sends
    them through httpx: each value JSON-encoded where it is not a plain string."""
    if request_data is None:
        return None
    files = request_data.multipart_data
    params = request_data.json_parameters
    if not files and not params:
        return None
    form = aiohttp.FormData(quote_fields=False)
    for name, value in params.items():
        form.add_field(name, value)
    for name, part in files.items():
        filename, content, *rest = part
        mime = rest[0] if rest else None
        form.add_field(name, content, filename=filename, content_type=mime)
    return form


def _described(status: int, payload: bytes) -> str:
    """What PTB would say of this answer: Telegram's description, else the status."""
    try:
        description = json.loads(payload).get("description")
    except (ValueError, AttributeError):
        description = None
    if isinstance(description, str) and description:
        return description
    try:
        return f"{HTTPStatus(status).phrase} ({status})"
    except ValueError:
        return f"Unknown HTTPError ({status})"


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _sum(*parts: float | None) -> float | None:
    """A timeout made of parts; none when any part is unbounded."""
    total = 0.0
    for part in parts:
        if part is None:
            return None
        total += part
    return total


def _without_url(exc: BaseException, url: str) -> str:
    """The error's words with the URL (and so the bot token) taken out."""
    text = str(exc)
    for secret in (url, url.split("?", 1)[0]):
        text = text.replace(secret, "<Bot API URL>")
    return text
