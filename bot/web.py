"""The service's own HTTP server: health, hosted reference images, and room for more routes
(webhooks, metrics) through `app.router`."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

from bot.media import MediaStore

__all__ = ["WebServer"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]


class WebServer:
    """aiohttp server on HTTP_HOST:HTTP_PORT. Use as an async context manager."""

    def __init__(
        self, *, host: str, port: int, media: MediaStore, health: HealthCheck | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.media = media
        self.health = health
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/media/{name}", self._media)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> WebServer:
        self._runner = web.AppRunner(self.app, access_log=None)
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

    async def _healthz(self, request: web.Request) -> web.Response:
        ok = True
        if self.health is not None:
            try:
                ok = await self.health()
            except Exception:
                ok = False
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        path = self.media.hosted_path(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.FileResponse(
            path, headers={"Content-Type": mime, "Cache-Control": "private, max-age=3600"}
        )
