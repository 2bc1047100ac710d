"""The service's own HTTP server: health and readiness, metrics, webhooks, and hosted
reference images."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from bot.media import MediaStore
from bot.metrics import CONTENT_TYPE, Metrics
from bot.webhooks import WebhookReceiver

__all__ = ["Connectable", "WebServer"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]


class _ServerLog(logging.Logger):
    """aiohttp's server log, except that a request it could not parse (a header too long,
    both Content-Length and Transfer-Encoding, garbage) is one INFO line, not an ERROR with
    a traceback: anyone on the internet can send one, and aiohttp answers it with a 4xx."""

    def __init__(self) -> None:
        super().__init__(server_logger.name)
        self.parent = server_logger.parent

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.info(
                "HTTP: refused a malformed request (%s %s)", exc_info.code, type(exc_info).__name__
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)


class Connectable(Protocol):
    """What /readyz asks of a chat adapter's starter (bot/supervisor.py)."""

    @property
    def platform(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def problem(self) -> str | None:
        """Why it is not connected, when known; never a token."""
        ...


class WebServer:
    """aiohttp server on HTTP_HOST:HTTP_PORT. Use as an async context manager.

    /healthz: the process and the database answer. /readyz: that, and every adapter in
    `adapters` (a list the caller may fill after start) is connected, with every platform
    in `expected` present. /metrics: Prometheus text. /webhooks/...: see bot/webhooks.py.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        media: MediaStore,
        health: HealthCheck | None = None,
        adapters: Sequence[Connectable] = (),
        expected: Sequence[str] = (),
        metrics: Metrics | None = None,
        webhooks: WebhookReceiver | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.media = media
        self.health = health
        self.adapters = adapters
        self.expected = tuple(expected)
        self.metrics = metrics
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/media/{name}", self._media)
        if metrics is not None:
            self.app.router.add_get("/metrics", self._metrics)
        if webhooks is not None:
            webhooks.install(self.app.router)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> WebServer:
        self._runner = web.AppRunner(self.app, access_log=None, logger=_ServerLog())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        log.info("HTTP server listening on %s", self.base_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthy(self) -> bool:
        if self.health is None:
            return True
        try:
            return await self.health()
        except Exception:
            return False

    async def _healthz(self, request: web.Request) -> web.Response:
        ok = await self._healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        adapters = {p: False for p in self.expected}  # configured, not started yet
        not_ready = {p: "not started yet" for p in self.expected}
        for adapter in self.adapters:
            adapters[adapter.platform] = bool(adapter.connected)
            if adapter.connected:
                not_ready.pop(adapter.platform, None)
            else:
                not_ready[adapter.platform] = adapter.problem or "connecting"
        database = await self._healthy()
        if not database:
            not_ready["database"] = "the job store does not answer"
        ready = not not_ready
        return web.json_response(
            {"ready": ready, "database": database, "adapters": adapters, "not_ready": not_ready},
            status=200 if ready else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self.metrics is not None
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        path = self.media.hosted_path(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(
            path, headers={"Content-Type": mime, "Cache-Control": "private, max-age=3600"}
        )
