"""The sandbox's HTTP server: ``SandboxGateway``, its routes, lifecycle and test controls.

Endpoints (all but ``/files/`` need ``X-API-Key`` when a key is configured)::

    POST /api/v1/aa/openapi/sora/tasks     Sora task (sora_studio, sora_fast)
    GET  /api/v1/aa/sora/tasks/{task_id}   Sora poll
    POST /v1/chat/completions              veo* video tasks; gpt-image-2 and nanobanana* (sync)
    POST /v1/images/generations            nanobanana* (sync, or a task with async: true)
    GET  /v1/tasks/{task_id}               video and async image tasks
    GET  /files/{name}                     the results (PNG / MP4 bytes)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from sandbox import parse, views
from sandbox.faults import InjectedFault, RequestHook, fault_body, fault_response
from sandbox.media import StoredFile, result_file
from sandbox.tasks import SandboxTask, TaskBoard, TaskFamily
from sandbox.wire import (
    CHAT_PATH,
    CREATE_PATHS,
    FAIL_CODE,
    FAIL_MESSAGE,
    FILES_PREFIX,
    IMAGES_PATH,
    MAX_BODY_BYTES,
    REFUND_CODE,
    REFUND_MESSAGE,
    SORA_CREATE_PATH,
    SORA_POLL_PREFIX,
    SORA_PRICE_USD,
    TASK_POLL_PREFIX,
    ApiError,
    LinkStyle,
    RecordedRequest,
    error_body,
    error_type,
)

__all__ = ["SYNC_WAIT_STEP_S", "SandboxGateway"]

log = logging.getLogger(__name__)

SYNC_WAIT_STEP_S = 0.01

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SandboxGateway(TaskBoard):
    """The simulated AA gateway; ``async with SandboxGateway() as gw: gw.base_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        speed: float = 1.0,
        durations: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        late_url_polls: int = 2,
    ) -> None:
        super().__init__(
            speed=speed, durations=durations, clock=clock, late_url_polls=late_url_polls
        )
        self.host = host
        self.port = port
        self.api_key = api_key
        self.chat_link_style: LinkStyle = "alternate"
        self.requests: list[RecordedRequest] = []
        self.faults: list[InjectedFault] = []
        self.hooks: list[RequestHook] = []
        self._files: dict[str, StoredFile] = {}
        self._links_served = 0
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._base_url: str | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("sandbox gateway already started")
        self._closing = asyncio.Event()
        runner = web.AppRunner(
            self._build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = int(runner.addresses[0][1])
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if host == "::":
            host = "::1"
        self._base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        log.info("sandbox gateway listening on %s", self._base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if self._closing is not None:
            self._closing.set()  # releases hanging faults and synchronous waits
        if runner is not None:
            await runner.cleanup()
        self._base_url = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("sandbox gateway is not started")
        return self._base_url

    # ---------------------------------------------------------------- test controls
    # (script_next, finish and duration_for come with the TaskBoard)

    def inject_fault(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 500,
        body: bytes | str | dict[str, Any] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        count: int = 1,
        delay: float = 0.0,
        after_processing: bool = False,
    ) -> InjectedFault:
        """Answer the next ``count`` matching requests with this response instead.

        ``method`` may be ``"*"``. ``delay`` sleeps before answering (a hang when longer than
        the client's timeout). ``after_processing=True`` handles the request first (a task is
        created and counted) and only then replaces the response.
        """
        fault = InjectedFault(
            method=method.upper(),
            path_prefix=path_prefix,
            status=status,
            body=fault_body(status, body),
            content_type=content_type,
            headers=dict(headers or {}),
            remaining=count,
            delay=delay,
            after_processing=after_processing,
        )
        self.faults.append(fault)
        return fault

    def on_next(
        self,
        method: str,
        path_prefix: str,
        hook: Callable[[RecordedRequest], Awaitable[None] | None],
    ) -> RequestHook:
        """Run ``hook(request)`` on the next request matching ``method`` (or ``"*"``) and
        ``path_prefix``, once it is recorded and before it is handled; an awaitable it returns
        is awaited first (a slow gateway). Then the request is handled as usual (an injected
        fault still applies). The fault suite kills the client there: the gateway acts on the
        request and its answer is lost."""
        entry = RequestHook(method.upper(), path_prefix, hook)
        self.hooks.append(entry)
        return entry

    def create_calls(self) -> list[RecordedRequest]:
        """The recorded POSTs to the three create endpoints."""
        return [r for r in self.requests if r.method == "POST" and r.path in CREATE_PATHS]

    # ---------------------------------------------------------------- the app

    def _build_app(self) -> web.Application:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._dispatch(request, handler)

        app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
        app.router.add_post(SORA_CREATE_PATH, self._sora_create)
        app.router.add_get(SORA_POLL_PREFIX + "{task_id}", self._sora_get)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(IMAGES_PATH, self._images)
        app.router.add_get(TASK_POLL_PREFIX + "{task_id}", self._task_get)
        app.router.add_get(FILES_PREFIX + "{name}", self._file)
        return app

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record the request, run a hook, apply a fault, check the key, then handle it."""
        recorded = await self._record(request)
        hook = next((h for h in self.hooks if h.matches(request.method, request.path)), None)
        if hook is not None:
            hook.done = True
            if inspect.isawaitable(held := hook.hook(recorded)):
                await held
        fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
        if fault is not None:
            fault.remaining -= 1
            fault.hits += 1
            if not fault.after_processing:
                await self._pause(fault.delay)
                return fault_response(fault)
        try:
            self._check_key(request)
            response = await handler(request)
        except ApiError as exc:
            response = web.json_response(
                error_body(exc.message, exc.type, exc.code), status=exc.status
            )
        except web.HTTPException as exc:
            response = web.json_response(
                error_body(exc.reason, error_type(exc.status)), status=exc.status
            )
        if fault is not None:
            await self._pause(fault.delay)
            return fault_response(fault)
        return response

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=parsed,
            body=raw,
            time=self.clock(),
        )
        self.requests.append(recorded)
        return recorded

    def _check_key(self, request: web.Request) -> None:
        if self.api_key is None or request.path.startswith(FILES_PREFIX):
            return
        given = request.headers.get("X-API-Key")
        if given is None:
            raise ApiError(401, "Missing X-API-Key header.", type_="authentication_error")
        if not secrets.compare_digest(given.encode(), self.api_key.encode()):
            raise ApiError(401, "Invalid API key.", type_="authentication_error")

    async def _pause(self, delay: float) -> None:
        if delay <= 0 or self._closing is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay)

    # ---------------------------------------------------------------- handlers

    async def _sora_create(self, request: web.Request) -> web.Response:
        sora = parse.sora_request(await parse.json_object(request))
        task = self._create_task(
            "sora",
            sora.model,
            sora.prompt,
            image_urls=[sora.image_url] if sora.image_url else [],
            reference_image_name=sora.reference_image_name,
            price_usd=SORA_PRICE_USD,
        )
        return web.json_response(views.sora_view(task))

    async def _sora_get(self, request: web.Request) -> web.Response:
        task = self._poll(request.match_info["task_id"], ("sora",))
        return web.json_response(views.sora_view(task))

    async def _task_get(self, request: web.Request) -> web.Response:
        task = self._poll(request.match_info["task_id"], ("video", "image_async"))
        return web.json_response(views.task_view(task))

    async def _chat(self, request: web.Request) -> web.Response:
        chat = parse.chat_request(await parse.json_object(request))
        if chat.is_video:
            task = self._create_task(
                "video",
                chat.model,
                chat.prompt,
                image_urls=chat.images,
                aspect_ratio=chat.aspect_ratio,
            )
            return web.json_response(views.video_task_created(task))
        task = self._create_task(
            "image_sync",
            chat.model,
            chat.prompt,
            image_urls=chat.images,
            aspect_ratio=chat.aspect_ratio,
            quality=chat.quality,
            task_id=f"chatcmpl_{self._next_seq():04x}{secrets.token_hex(4)}",
        )
        url = await self._wait_sync(task)
        return web.json_response(views.chat_completion(task, self._link_content(url)))

    async def _images(self, request: web.Request) -> web.Response:
        images = parse.images_request(await parse.json_object(request))
        if images.is_async:
            task = self._create_task(
                "image_async",
                images.model,
                images.prompt,
                image_urls=images.images,
                aspect_ratio=images.aspect_ratio,
                quality=images.quality,
            )
            return web.json_response(views.image_task_created(task))
        task = self._create_task(
            "image_sync",
            images.model,
            images.prompt,
            image_urls=images.images,
            aspect_ratio=images.aspect_ratio,
            quality=images.quality,
            task_id=f"img_{self._next_seq():04x}{secrets.token_hex(4)}",
        )
        url = await self._wait_sync(task)
        return web.json_response(views.images_result(task, url))

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored = self._files.get(name)
        if stored is None:
            raise ApiError(404, f"No such file {name!r}.", type_="not_found_error")
        if stored.expires_in is not None and self.clock() - stored.created > stored.expires_in:
            return web.Response(
                status=403,
                text="<Error><Code>AccessDenied</Code><Message>Request has expired"
                "</Message></Error>",
                content_type="application/xml",
            )
        return web.Response(body=stored.data, content_type=stored.content_type)

    # ---------------------------------------------------------------- tasks over HTTP

    def _poll(self, task_id: str, families: tuple[TaskFamily, ...]) -> SandboxTask:
        task = self.tasks.get(task_id)
        if task is None or task.family not in families:
            raise ApiError(404, f"Task {task_id!r} not found.", type_="not_found_error")
        task.polls += 1
        self._advance(task, self.clock(), poll=True)
        return task

    def _store_result(self, task: SandboxTask, now: float) -> str:
        name, stored = result_file(task.task_id, task.is_video, task.aspect_ratio, now)
        self._files[name] = stored
        return f"{self.base_url}{FILES_PREFIX}{name}"

    async def _wait_sync(self, task: SandboxTask) -> str:
        """Block like the real synchronous endpoints until the task ends; return its URL."""
        while True:
            now = self.clock()
            self._advance(task, now, poll=False)
            if task.terminal:
                break
            if self._closing is None or self._closing.is_set():
                raise ApiError(503, "The sandbox gateway is shutting down.", type_="server_error")
            remaining = task.created + task.duration - now
            await asyncio.sleep(min(max(remaining, 0.001), SYNC_WAIT_STEP_S))
        if task.outcome == "failed":
            raise ApiError(400, FAIL_MESSAGE, type_="generation_error", code=FAIL_CODE)
        if task.outcome == "refunded":
            raise ApiError(502, REFUND_MESSAGE, type_="generation_error", code=REFUND_CODE)
        assert task.result_url is not None
        return task.result_url

    def _link_content(self, url: str) -> str:
        style = self.chat_link_style
        if style == "alternate":
            style = "markdown" if self._links_served % 2 == 0 else "bare"
        self._links_served += 1
        if style == "markdown":
            return f"Here is your image:\n\n![image]({url})\n\nThe link stays valid for 24 hours."
        return url
