"""The service's own HTTP server: health and readiness, metrics, webhooks, hosted
reference images, and the galleries of creative sessions."""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from bot.gallery import GallerySource, listed_files, not_found_page, render_page, with_files
from bot.media import MediaStore
from bot.metrics import CONTENT_TYPE, FleetReader, Metrics
from bot.ports import Sharded
from bot.replicas import Fleet
from bot.sessions import GalleryPage
from bot.webhooks import WebhookReceiver

__all__ = ["Connectable", "Routes", "WebServer"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]

# A gallery key as the session store makes them (URL-safe); anything else is not looked up.
_GALLERY_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# The page changes with every entry and vote: ask again each time (it is cheap). It runs no
# script and loads nothing from elsewhere; the key in its URL is its only secret.
_PAGE_HEADERS = {
    **NOSNIFF,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
_MISSING_HEADERS = {**NOSNIFF, "Cache-Control": "no-store"}
# A kept file never changes under its name; a day in the browser, in no shared cache.
_FILE_HEADERS = {**NOSNIFF, "Cache-Control": "private, max-age=86400"}


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

    @property
    def elsewhere(self) -> str | None:
        """The replica holding this platform's connection when another one does."""
        ...


class Routes(Protocol):
    """More routes on the server: a chat platform's webhook (adapters/telegram/webhook.py)."""

    def install(self, router: web.UrlDispatcher) -> None: ...


def _waiting(shards: Mapping[int, str]) -> str:
    """Why a connected-looking adapter is not ready: its shards that are not."""
    waiting = [f"shard {i} {state}" for i, state in sorted(shards.items()) if state != "ready"]
    return ", ".join(waiting) or "connecting"


class WebServer:
    """aiohttp server on HTTP_HOST:HTTP_PORT. Use as an async context manager.

    /healthz: the process and the database answer. /readyz: that, and every adapter in
    `adapters` (a list the caller may fill after start) is connected or held by another
    replica (`held_elsewhere`), with every platform in `expected` present; with `fleet`,
    also this replica's name, every replica and every lease. /metrics: Prometheus text.
    /webhooks/...: see bot/webhooks.py.
    /sessions/<key>: a session's gallery page from `gallery`, and /sessions/<key>/files/<name>
    the files it lists (no gallery source: both answer 404). `routes`: each installs its own
    (TELEGRAM_WEBHOOK_URL's path).
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
        gallery: GallerySource | None = None,
        fleet: FleetReader | None = None,
        routes: Sequence[Routes] = (),
    ) -> None:
        self.host = host
        self.fleet = fleet
        self.port = port
        self.media = media
        self.health = health
        self.adapters = adapters
        self.expected = tuple(expected)
        self.metrics = metrics
        self.gallery = gallery
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/media/{name}", self._media)
        self.app.router.add_get("/sessions/{key}", self._gallery_page)
        self.app.router.add_get("/sessions/{key}/files/{name}", self._gallery_file)
        self.app.router.add_get("/sessions/{rest:.*}", self._gallery_missing)  # the same 404
        if metrics is not None:
            self.app.router.add_get("/metrics", self._metrics)
        if webhooks is not None:
            webhooks.install(self.app.router)
        for more in routes:
            more.install(self.app.router)
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
        elsewhere: dict[str, str] = {}
        shards: dict[str, dict[str, str]] = {}  # platform -> shard -> state, when sharded
        for adapter in self.adapters:
            adapters[adapter.platform] = bool(adapter.connected)
            states = adapter.shards if isinstance(adapter, Sharded) else {}
            if states:
                shards[adapter.platform] = {str(i): state for i, state in sorted(states.items())}
            holder = None if adapter.connected else adapter.elsewhere
            if adapter.connected or holder:
                not_ready.pop(adapter.platform, None)
            else:
                not_ready[adapter.platform] = adapter.problem or _waiting(states)
            if holder:
                elsewhere[adapter.platform] = f"held by {holder}"
        database = await self._healthy()
        if not database:
            not_ready["database"] = "the job store does not answer"
        ready = not not_ready
        body: dict[str, Any] = {
            "ready": ready,
            "database": database,
            "adapters": adapters,
            "held_elsewhere": elsewhere,
            "not_ready": not_ready,
        }
        if shards:
            body["shards"] = shards
        if self.fleet is not None and database:
            body.update(await self._fleet_view())
        return web.json_response(body, status=200 if ready else 503)

    async def _fleet_view(self) -> dict[str, Any]:
        """This replica, every replica that beats, and every lease held, for /readyz."""
        assert self.fleet is not None
        try:
            fleet: Fleet = await self.fleet()
        except Exception:
            log.exception("/readyz: replicas and leases not read")
            return {}
        return {
            "replica": fleet.me,
            "replicas": {
                r.name: {
                    "role": fleet.role(r),
                    "alive": r.name in fleet.alive,
                    "started_at": r.started_at,
                    "heartbeat_age_s": round(max(fleet.now - r.heartbeat_at, 0.0), 3),
                }
                for r in fleet.replicas
            },
            "leases": {
                lease.name: {
                    "holder": lease.holder,
                    "here": lease.holder == fleet.me,
                    "since": lease.acquired_at,
                    "held_for_s": round(max(fleet.now - lease.acquired_at, 0.0), 3),
                    "expires_in_s": round(lease.expires_at - fleet.now, 3),
                }
                for lease in fleet.held()
            },
        }

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

    # -- galleries -----------------------------------------------------------------------------

    async def _page_of(self, key: str) -> GalleryPage | None:
        if self.gallery is None or not _GALLERY_KEY.fullmatch(key):
            return None
        return await self.gallery.page(key)

    @staticmethod
    def _not_found() -> web.Response:
        return web.Response(
            text=not_found_page(),
            status=404,
            content_type="text/html",
            charset="utf-8",
            headers=_MISSING_HEADERS,
        )

    async def _gallery_missing(self, request: web.Request) -> web.Response:
        return self._not_found()

    async def _gallery_page(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        page = await self._page_of(key)
        if page is None or self.gallery is None:
            return self._not_found()
        source = self.gallery
        page = with_files(page, lambda name: source.file_path(key, name) is not None)
        body = render_page(
            page,
            file_url=lambda name: f"{quote(key)}/files/{quote(name)}",  # relative: proxies
            order="top" if request.query.get("order") == "top" else "new",
            model_name=source.model_name,
        )
        return web.Response(
            text=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
        )

    async def _gallery_file(self, request: web.Request) -> web.StreamResponse:
        key, name = request.match_info["key"], request.match_info["name"]
        page = await self._page_of(key)
        if page is None or self.gallery is None or name not in listed_files(page):
            return self._not_found()
        path = self.gallery.file_path(key, name)
        if path is None:
            return self._not_found()
        mime = mimetypes.guess_type(path.name)[0] or ""
        headers = dict(_FILE_HEADERS)
        if mime.startswith(("image/", "video/")) and mime != "image/svg+xml":
            headers["Content-Type"] = mime
        else:  # never shown as a page of ours (SVG can hold script), whatever its name says
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Disposition"] = "attachment"
        return web.FileResponse(path, headers=headers)
