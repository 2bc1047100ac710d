"""Webhook mode's way in: Telegram POSTs each update to TELEGRAM_WEBHOOK_URL, which a load
balancer maps to this path on our HTTP server (bot/web.py), in any replica.

The route keeps the update in the store's inbox (as polling does, inbox.py) and answers 200
only once it is on disk, so Telegram forgets nothing we have not kept; when the store fails
it answers 500 and Telegram sends it again. An update that comes twice is kept once. A
request without the secret Telegram was given (`X-Telegram-Bot-Api-Secret-Token`) gets 403
and nothing is read; a body that is not an update 400; one too large 413.

Handling is not the route's: the adapter running in this process (intake.py) is woken at
once, and any replica's adapter finds updates other replicas kept by reading the inbox."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update

from adapters.telegram.inbox import inbox_source
from bot.config import Settings
from bot.ports import Clock, InboxStore

__all__ = ["DRAIN_INTERVAL_S", "SECRET_HEADER", "UPDATE_MAX_BYTES", "TelegramWebhook"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
UPDATE_MAX_BYTES = 1024 * 1024  # an update is a few KB; a body past this is not one
DRAIN_INTERVAL_S = 0.5  # how soon the adapter here handles an update another replica kept
_CHUNK = 64 * 1024


class TelegramWebhook:
    """The aiohttp route of TELEGRAM_WEBHOOK_URL's path, and the wake-up of the adapter
    that handles what it keeps. No I/O in `__init__`; `install` adds the route."""

    def __init__(
        self,
        store: InboxStore,
        clock: Clock,
        *,
        path: str,
        secret: str,
        source: str,
        max_bytes: int = UPDATE_MAX_BYTES,
        drain_interval_s: float = DRAIN_INTERVAL_S,
    ) -> None:
        self.store = store
        self.clock = clock
        self.path = path
        self.source = source
        self.max_bytes = max_bytes
        self.drain_interval_s = drain_interval_s  # read by the adapter handling the updates
        self._secret = secret.encode()
        self._arrived = asyncio.Event()

    @classmethod
    def from_settings(
        cls, store: InboxStore, clock: Clock, settings: Settings
    ) -> TelegramWebhook | None:
        """The route of TELEGRAM_WEBHOOK_URL; None without it or without a bot token."""
        path, secret = settings.telegram_webhook_path, settings.telegram_webhook_secret_token()
        token = settings.telegram_bot_token
        if path is None or secret is None or token is None:
            return None
        return cls(
            store, clock, path=path, secret=secret, source=inbox_source(token.get_secret_value())
        )

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_post(self.path, self.handle)

    # -- the wake-up -----------------------------------------------------------------------

    def ring(self) -> None:
        self._arrived.set()

    async def wait(self, timeout_s: float) -> None:
        """Until an update was kept here (since the last `wait` returned), or `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._arrived.wait()
        self._arrived.clear()

    # -- the route -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("telegram webhook: a request without the right secret refused (403)")
            return web.Response(status=403, text="forbidden")
        body = await self._body(request)
        if body is None:
            log.warning("telegram webhook: a body over %d bytes refused (413)", self.max_bytes)
            return web.Response(status=413, text="too large")
        update = _update(body)
        if update is None:
            log.warning("telegram webhook: a body that is not an update refused (400)")
            return web.Response(status=400, text="not an update")
        update_id, payload = update
        try:
            new = await self.store.inbox_add(self.source, [(update_id, payload)], self.clock.now())
        except Exception as exc:  # not kept: Telegram sends it again
            name = type(exc).__name__
            log.error("telegram webhook: update %s not recorded (%s)", update_id, name)
            return web.Response(status=500, text="not recorded; send it again")
        if new:
            self.ring()
            log.debug("telegram webhook: update %s kept", update_id)
        else:
            log.info("telegram webhook: update %s came again; kept once", update_id)
        return web.Response(status=200)

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None past `max_bytes` (read no further than that)."""
        length = request.content_length
        if length is not None and length > self.max_bytes:
            return None
        body = bytearray()
        async for chunk in request.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                return None
        return bytes(body)


def _update(body: bytes) -> tuple[int, str] | None:
    """(update_id, the JSON text) of an Update as Telegram sends it; None for anything else."""
    try:
        text = body.decode("utf-8")
        data: Any = json.loads(text)
    except ValueError:  # UnicodeDecodeError is one
        return None
    if not isinstance(data, dict):
        return None
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        return None
    try:
        Update.de_json(data, None)
    except Exception:  # a field of the wrong shape: PTB could not hand it to a handler
        return None
    return update_id, text
