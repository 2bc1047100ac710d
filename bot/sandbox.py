"""A simulated AA model gateway: an in-process aiohttp server on loopback.

It speaks the gateway's HTTP API as documented (``/work/shared/upstream-api.md``, Gateway A)
so that ``genrelay demo`` runs jobs with no key and no network, and tests use it as the
fake gateway with scripted outcomes and faults.

Endpoints (all but ``/files/`` need ``X-API-Key`` when a key is configured)::

    POST /api/v1/aa/openapi/sora/tasks     Sora task (sora_studio, sora_fast)
    GET  /api/v1/aa/sora/tasks/{task_id}   Sora poll
    POST /v1/chat/completions              veo* video tasks; gpt-image-2 and nanobanana* (sync)
    POST /v1/images/generations            nanobanana* (sync, or a task with async: true)
    GET  /v1/tasks/{task_id}               video and async image tasks
    GET  /files/{name}                     the results (PNG / MP4 bytes)

Time is read from an injected clock, so a test moves a task along by moving the clock:
queued for the first 10% of the duration, then running with a rising progress, then (for
``late_url_polls`` polls) running at progress 100 with no result URL, then terminal.

Outcomes: ``[fail]`` / ``[refund]`` / ``[slow]`` in a prompt, ``script_next()`` for the next
task, ``finish()`` for a task now, ``inject_fault()`` for the HTTP layer, and ``on_next()``
to run a test's callable when a request arrives (the crash suite kills its client there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import math
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

__all__ = [
    "DEFAULT_DURATIONS",
    "InjectedFault",
    "Outcome",
    "ProgressCurve",
    "RecordedRequest",
    "RequestHook",
    "SandboxGateway",
    "SandboxTask",
    "TaskFamily",
    "TaskScript",
    "error_body",
    "main",
]

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "refunded"]
TaskFamily = Literal["sora", "video", "image_async", "image_sync"]
# A callable maps the elapsed fraction of the duration (0..1) to a percentage; a sequence
# gives the progress of successive polls while running (its last value repeats).
ProgressCurve = Callable[[float], int] | Sequence[int]
LinkStyle = Literal["alternate", "markdown", "bare"]

SORA_CREATE_PATH = "/api/v1/aa/openapi/sora/tasks"
SORA_POLL_PREFIX = "/api/v1/aa/sora/tasks/"
CHAT_PATH = "/v1/chat/completions"
IMAGES_PATH = "/v1/images/generations"
TASK_POLL_PREFIX = "/v1/tasks/"
FILES_PREFIX = "/files/"
CREATE_PATHS = frozenset({SORA_CREATE_PATH, CHAT_PATH, IMAGES_PATH})

SORA_MODELS = frozenset({"sora_studio", "sora_fast"})
SORA_FIELDS = frozenset({"prompt", "model_code", "image_url", "reference_image_name"})
VIDEO_MODELS = frozenset({"veo", "veo_fast", "veo_reference"})
VIDEO_ASPECT_MODELS = frozenset({"veo", "veo_fast"})
VEO_REF_PREFIX = "firefly-veo31-ref-"
GPT_IMAGE_MODEL = "gpt-image-2"
NANOBANANA_ALIASES: Mapping[str, str] = {
    "nanobanana": "nanobanana",
    "gemini-2.5-flash-image": "nanobanana",
    "nanobanana_pro": "nanobanana_pro",
    "gemini-3-pro-image-preview": "nanobanana_pro",
}

DEFAULT_DURATIONS: Mapping[str, float] = {
    "sora_studio": 8.0,
    "sora_fast": 8.0,
    "veo": 6.0,
    "veo_fast": 4.0,
    "veo_reference": 6.0,
    "gpt-image-2": 2.0,
    "nanobanana": 2.0,
    "nanobanana_pro": 3.0,
}

SORA_PRICE_USD = 0.65
SORA_PROMPT_MIN, PROMPT_MAX = 3, 4000
MAX_MESSAGES = 20
MAX_VIDEO_IMAGES = 2
MAX_IMAGE_REFERENCES = 6
IMAGE_ASPECT_RATIOS: Mapping[str, float] = {
    "1:1": 1.0,
    "16:9": 16 / 9,
    "9:16": 9 / 16,
    "4:3": 4 / 3,
    "3:4": 3 / 4,
}
VIDEO_ASPECT_RATIOS = frozenset({"16:9", "9:16"})
QUALITY_TIERS: Mapping[str, str] = {"1k": "1k", "2k": "2k", "4k": "4k", "hd": "2k", "ultra": "4k"}
RESULT_EXPIRES_IN_S = 86400
QUEUED_FRACTION = 0.1
SLOW_FACTOR = 10.0
SYNC_WAIT_STEP_S = 0.01
PNG_LONG_SIDE = 64
MAX_BODY_BYTES = 32 * 1024 * 1024

FAIL_CODE = "content_policy"
FAIL_MESSAGE = "The prompt was blocked by the content safety filter. You were not charged."
REFUND_CODE = "upstream_error"
REFUND_MESSAGE = "The upstream model failed to generate a result; the charge was refunded."

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _ApiError(Exception):
    """A documented 4xx/5xx answer, turned into the JSON error body by the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """The JSON body of every error the sandbox itself produces."""
    return {"error": {"message": message, "type": type_, "code": code}}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the sandbox received it (faulted ones included)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    time: float


@dataclass
class TaskScript:
    """How the next created task behaves; queued by ``SandboxGateway.script_next``."""

    outcome: Outcome = "succeeded"
    duration: float | None = None
    late_url_polls: int | None = None
    progress_curve: ProgressCurve | None = None


@dataclass
class InjectedFault:
    """A canned response for the next ``remaining`` requests matching method and path."""

    method: str
    path_prefix: str
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    remaining: int
    delay: float
    after_processing: bool
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.method in ("*", method.upper())
            and path.startswith(self.path_prefix)
        )


@dataclass
class RequestHook:
    """A callable run on the next request matching method and path, before it is handled."""

    method: str
    path_prefix: str
    hook: Callable[[RecordedRequest], Awaitable[None] | None]
    done: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (
            not self.done
            and self.method in ("*", method.upper())
            and path.startswith(self.path_prefix)
        )


@dataclass
class SandboxTask:
    """One generation as the sandbox sees it; views render it in each family's shape."""

    task_id: str
    family: TaskFamily
    model: str
    prompt: str
    created: float
    created_wall: datetime
    created_unix: int
    duration: float
    outcome: Outcome
    late_url_polls: int
    progress_curve: ProgressCurve | None = None
    image_urls: list[str] = field(default_factory=list)
    reference_image_name: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None
    price_usd: float = 0.0
    # state, advanced by the gateway
    status: str = "queued"
    progress: int = 0
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    refunded_usd: float = 0.0
    updated: float = 0.0
    finished: float | None = None
    polls: int = 0
    running_polls: int = 0
    late_polls_served: int = 0

    @property
    def is_video(self) -> bool:
        return self.family in ("sora", "video")

    @property
    def terminal(self) -> bool:
        return self.finished is not None

    def wall(self, at: float) -> str:
        """Server-local ISO datetime (no zone) of clock reading ``at``."""
        moment = self.created_wall + timedelta(seconds=max(at - self.created, 0.0))
        return moment.isoformat(timespec="seconds")


@dataclass
class _StoredFile:
    data: bytes
    content_type: str
    created: float
    expires_in: float | None


class SandboxGateway:
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
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if late_url_polls < 0:
            raise ValueError("late_url_polls must be >= 0")
        for name, value in (durations or {}).items():
            if not _is_known_model(name):
                raise ValueError(f"durations: unknown model {name!r}")
            if value < 0:
                raise ValueError(f"durations: {name} must be >= 0")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.speed = speed
        self.durations: dict[str, float] = {**DEFAULT_DURATIONS, **(durations or {})}
        self.clock = clock
        self.late_url_polls = late_url_polls
        self.chat_link_style: LinkStyle = "alternate"
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, SandboxTask] = {}
        self.faults: list[InjectedFault] = []
        self.hooks: list[RequestHook] = []
        self._scripts: deque[TaskScript] = deque()
        self._files: dict[str, _StoredFile] = {}
        self._seq = 0
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

    def script_next(
        self,
        outcome: Outcome = "succeeded",
        duration: float | None = None,
        late_url_polls: int | None = None,
        progress_curve: ProgressCurve | None = None,
    ) -> TaskScript:
        """Queue how the next created task behaves (FIFO; wins over prompt keywords)."""
        if outcome not in ("succeeded", "failed", "refunded"):
            raise ValueError(f"unknown outcome {outcome!r}")
        script = TaskScript(outcome, duration, late_url_polls, progress_curve)
        self._scripts.append(script)
        return script

    def finish(self, task_id: str, outcome: Outcome = "succeeded") -> SandboxTask:
        """End a task now with ``outcome`` (no late-URL polls)."""
        task = self.tasks[task_id]
        if task.terminal:
            raise ValueError(f"task {task_id} already finished ({task.status})")
        self._terminate(task, outcome, self.clock())
        return task

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
        if body is None:
            body = error_body(f"Injected fault (HTTP {status})", _error_type(status))
        if isinstance(body, dict):
            raw = json.dumps(body).encode()
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = body
        fault = InjectedFault(
            method=method.upper(),
            path_prefix=path_prefix,
            status=status,
            body=raw,
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

    def duration_for(self, model: str) -> float:
        """Base duration of ``model`` times ``speed``."""
        key = model
        if model not in self.durations and model.startswith(VEO_REF_PREFIX):
            key = "veo_reference"
        return self.durations[key] * self.speed

    # ---------------------------------------------------------------- the app

    def _build_app(self) -> web.Application:
        @web.middleware
        async def middleware(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            return await self._dispatch(request, handler)

        app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
        app.router.add_post(SORA_CREATE_PATH, self._sora_create)
        app.router.add_get(SORA_POLL_PREFIX + "{task_id}", self._sora_get)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(IMAGES_PATH, self._images)
        app.router.add_get(TASK_POLL_PREFIX + "{task_id}", self._task_get)
        app.router.add_get(FILES_PREFIX + "{name}", self._file)
        return app

    async def _dispatch(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
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
                return _fault_response(fault)
        try:
            if self.api_key is not None and not request.path.startswith(FILES_PREFIX):
                given = request.headers.get("X-API-Key")
                if given is None:
                    raise _ApiError(401, "Missing X-API-Key header.", type_="authentication_error")
                if not secrets.compare_digest(given.encode(), self.api_key.encode()):
                    raise _ApiError(401, "Invalid API key.", type_="authentication_error")
            response = await handler(request)
        except _ApiError as exc:
            response = web.json_response(
                error_body(exc.message, exc.type, exc.code), status=exc.status
            )
        except web.HTTPException as exc:
            response = web.json_response(
                error_body(exc.reason, _error_type(exc.status)), status=exc.status
            )
        if fault is not None:
            await self._pause(fault.delay)
            return _fault_response(fault)
        return response

    async def _pause(self, delay: float) -> None:
        if delay <= 0 or self._closing is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay)

    # ---------------------------------------------------------------- handlers

    async def _sora_create(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        extra = sorted(set(body) - SORA_FIELDS)
        if extra:
            raise _ApiError(
                400,
                f"Unsupported field(s): {', '.join(extra)}. Only prompt, model_code, "
                "image_url and reference_image_name are accepted.",
            )
        prompt = _required_string(body, "prompt")
        if not SORA_PROMPT_MIN <= len(prompt.strip()) <= PROMPT_MAX:
            raise _ApiError(400, f"prompt must be {SORA_PROMPT_MIN}-{PROMPT_MAX} characters long.")
        model = _string(body, "model_code") or "sora_studio"
        if model not in SORA_MODELS:
            raise _ApiError(400, f"Unknown model_code {model!r}; use sora_studio or sora_fast.")
        image_url = _string(body, "image_url")
        if image_url is not None:
            _check_image_url(image_url)
        task = self._create_task(
            "sora",
            model,
            prompt,
            image_urls=[image_url] if image_url else [],
            reference_image_name=_string(body, "reference_image_name"),
            price_usd=SORA_PRICE_USD,
        )
        return web.json_response(_sora_view(task))

    async def _sora_get(self, request: web.Request) -> web.Response:
        task = self._poll(request.match_info["task_id"], ("sora",))
        return web.json_response(_sora_view(task))

    async def _task_get(self, request: web.Request) -> web.Response:
        task = self._poll(request.match_info["task_id"], ("video", "image_async"))
        return web.json_response(_task_view(task))

    async def _chat(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        model = _required_string(body, "model")
        if not (_is_video_model(model) or model == GPT_IMAGE_MODEL or model in NANOBANANA_ALIASES):
            raise _ApiError(400, f"Unknown model {model!r}.", code="model_not_found")
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise _ApiError(400, "stream must be a boolean.")
        if stream:
            raise _ApiError(400, "stream=true is not supported by the sandbox gateway.")
        prompt, images = _read_messages(body.get("messages"))
        if _is_video_model(model):
            if len(images) > MAX_VIDEO_IMAGES:
                raise _ApiError(400, f"At most {MAX_VIDEO_IMAGES} reference images are allowed.")
            aspect = "16:9"
            if model in VIDEO_ASPECT_MODELS:
                aspect = _string(body, "aspect_ratio") or "16:9"
                if aspect not in VIDEO_ASPECT_RATIOS:
                    raise _ApiError(400, "aspect_ratio must be 16:9 or 9:16.")
            task = self._create_task("video", model, prompt, image_urls=images, aspect_ratio=aspect)
            return web.json_response(
                {
                    "id": task.task_id,
                    "object": "video.task",
                    "created": task.created_unix,
                    "model": task.model,
                    "task": _task_view(task),
                }
            )
        if len(images) > MAX_IMAGE_REFERENCES:
            raise _ApiError(400, f"At most {MAX_IMAGE_REFERENCES} reference images are allowed.")
        if model == GPT_IMAGE_MODEL:
            aspect, quality = "1:1", "2k"  # documented as unreliable here: not validated
        else:
            model = NANOBANANA_ALIASES[model]
            aspect, quality = _image_options(body)
        task = self._create_task(
            "image_sync",
            model,
            prompt,
            image_urls=images,
            aspect_ratio=aspect,
            quality=quality,
            task_id=f"chatcmpl_{self._next_seq():04x}{secrets.token_hex(4)}",
        )
        url = await self._wait_sync(task)
        return web.json_response(
            {
                "id": task.task_id,
                "object": "chat.completion",
                "created": task.created_unix,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self._link_content(url)},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    async def _images(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        requested = _required_string(body, "model")
        model = NANOBANANA_ALIASES.get(requested)
        if model is None:
            raise _ApiError(
                400,
                f"Unknown model {requested!r} for /v1/images/generations.",
                code="model_not_found",
            )
        prompt = _required_string(body, "prompt")
        if not 1 <= len(prompt.strip()) <= PROMPT_MAX:
            raise _ApiError(400, f"prompt must be 1-{PROMPT_MAX} characters long.")
        aspect, quality = _image_options(body)
        images = _generation_images(body)
        num_images = body.get("num_images")
        if num_images is not None and (
            isinstance(num_images, bool) or not isinstance(num_images, int) or num_images != 1
        ):
            raise _ApiError(400, "num_images: only 1 image per request is supported.")
        is_async = body.get("async", False)
        if is_async is not None and not isinstance(is_async, bool):
            raise _ApiError(400, "async must be a boolean.")
        if is_async:
            task = self._create_task(
                "image_async",
                model,
                prompt,
                image_urls=images,
                aspect_ratio=aspect,
                quality=quality,
            )
            return web.json_response(
                {
                    "id": task.task_id,
                    "object": "video.task",
                    "created": task.created_unix,
                    "model": model,
                    "task": {
                        "task_id": task.task_id,
                        "status": "queued",
                        "progress": 0,
                        "result_image_url": None,
                    },
                }
            )
        task = self._create_task(
            "image_sync",
            model,
            prompt,
            image_urls=images,
            aspect_ratio=aspect,
            quality=quality,
            task_id=f"img_{self._next_seq():04x}{secrets.token_hex(4)}",
        )
        url = await self._wait_sync(task)
        return web.json_response(
            {"created": task.created_unix, "model": model, "data": [{"url": url}]}
        )

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored = self._files.get(name)
        if stored is None:
            raise _ApiError(404, f"No such file {name!r}.", type_="not_found_error")
        if stored.expires_in is not None and self.clock() - stored.created > stored.expires_in:
            return web.Response(
                status=403,
                text="<Error><Code>AccessDenied</Code><Message>Request has expired"
                "</Message></Error>",
                content_type="application/xml",
            )
        return web.Response(body=stored.data, content_type=stored.content_type)

    # ---------------------------------------------------------------- tasks

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _create_task(
        self,
        family: TaskFamily,
        model: str,
        prompt: str,
        *,
        image_urls: list[str],
        reference_image_name: str | None = None,
        aspect_ratio: str | None = None,
        quality: str | None = None,
        price_usd: float = 0.0,
        task_id: str | None = None,
    ) -> SandboxTask:
        now, wall = self.clock(), datetime.now()
        seq = self._next_seq()
        if task_id is None:
            day = wall.strftime("%Y%m%d")
            if family == "sora":
                task_id = f"task_{day}{seq:04d}_{secrets.token_hex(4)}"
            elif family == "video":
                task_id = f"evt_{day}_{seq:04x}{secrets.token_hex(2)}"
            else:
                task_id = f"evt_{day}_img{seq:04x}{secrets.token_hex(2)}"
        script = self._scripts.popleft() if self._scripts else TaskScript(_keyword_outcome(prompt))
        duration = self.duration_for(model)
        if script.duration is not None:
            duration = script.duration
        elif "[slow]" in prompt.lower():
            duration *= SLOW_FACTOR
        if family == "image_sync":
            late = 0  # nothing polls a synchronous call
        elif script.late_url_polls is not None:
            late = script.late_url_polls
        else:
            late = self.late_url_polls if family == "sora" else 0
        task = SandboxTask(
            task_id=task_id,
            family=family,
            model=model,
            prompt=prompt,
            created=now,
            created_wall=wall.replace(microsecond=0),
            created_unix=int(time.time()),
            duration=max(duration, 0.0),
            outcome=script.outcome,
            late_url_polls=max(late, 0),
            progress_curve=script.progress_curve,
            image_urls=image_urls,
            reference_image_name=reference_image_name,
            aspect_ratio=aspect_ratio,
            quality=quality,
            price_usd=price_usd,
            updated=now,
        )
        self.tasks[task_id] = task
        log.info(
            "sandbox task created task_id=%s model=%s outcome=%s duration=%.2f",
            task_id,
            model,
            task.outcome,
            task.duration,
        )
        return task

    def _poll(self, task_id: str, families: tuple[TaskFamily, ...]) -> SandboxTask:
        task = self.tasks.get(task_id)
        if task is None or task.family not in families:
            raise _ApiError(404, f"Task {task_id!r} not found.", type_="not_found_error")
        task.polls += 1
        self._advance(task, self.clock(), poll=True)
        return task

    def _advance(self, task: SandboxTask, now: float, *, poll: bool) -> None:
        if task.terminal:
            return
        elapsed = now - task.created
        running = "processing" if task.family == "sora" else "running"
        if elapsed >= task.duration:
            if task.late_polls_served < task.late_url_polls:
                if poll:
                    task.late_polls_served += 1
                self._set_state(task, running, 100, now)
                return
            self._terminate(task, task.outcome, now)
            return
        if elapsed < QUEUED_FRACTION * task.duration:
            self._set_state(task, "queued", 0, now)
            return
        fraction = elapsed / task.duration if task.duration > 0 else 1.0
        curve = task.progress_curve
        if curve is None:
            progress = min(max(int(fraction * 100), 1), 99)
        elif callable(curve):
            progress = int(curve(fraction))
        else:
            progress = int(curve[min(task.running_polls, len(curve) - 1)]) if curve else 0
        if poll:
            task.running_polls += 1
        self._set_state(task, running, min(max(progress, 0), 100), now)

    @staticmethod
    def _set_state(task: SandboxTask, status: str, progress: int, now: float) -> None:
        if (task.status, task.progress) != (status, progress):
            task.status, task.progress, task.updated = status, progress, now

    def _terminate(self, task: SandboxTask, outcome: Outcome, now: float) -> None:
        task.outcome = outcome
        task.finished = task.updated = now
        if outcome == "succeeded":
            task.status = "completed" if task.family == "sora" else "succeeded"
            task.progress = 100
            task.result_url = self._store_result(task, now)
        elif outcome == "failed":
            task.status = "failed"
            task.error_code, task.error_message = FAIL_CODE, FAIL_MESSAGE
        else:
            task.status = "refunded"
            task.error_code, task.error_message = REFUND_CODE, REFUND_MESSAGE
            task.refunded_usd = task.price_usd
        log.info("sandbox task finished task_id=%s status=%s", task.task_id, task.status)

    def _store_result(self, task: SandboxTask, now: float) -> str:
        if task.is_video:
            name = f"{task.task_id}.mp4"
            self._files[name] = _StoredFile(_mp4_bytes(task.task_id), "video/mp4", now, None)
        else:
            name = f"{task.task_id}.png"
            png = _png_bytes(task.task_id, task.aspect_ratio or "1:1")
            self._files[name] = _StoredFile(png, "image/png", now, RESULT_EXPIRES_IN_S)
        return f"{self.base_url}{FILES_PREFIX}{name}"

    async def _wait_sync(self, task: SandboxTask) -> str:
        """Block like the real synchronous endpoints until the task ends; return its URL."""
        while True:
            now = self.clock()
            self._advance(task, now, poll=False)
            if task.terminal:
                break
            if self._closing is None or self._closing.is_set():
                raise _ApiError(503, "The sandbox gateway is shutting down.", type_="server_error")
            remaining = task.created + task.duration - now
            await asyncio.sleep(min(max(remaining, 0.001), SYNC_WAIT_STEP_S))
        if task.outcome == "failed":
            raise _ApiError(400, FAIL_MESSAGE, type_="generation_error", code=FAIL_CODE)
        if task.outcome == "refunded":
            raise _ApiError(502, REFUND_MESSAGE, type_="generation_error", code=REFUND_CODE)
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


# -------------------------------------------------------------------- views


def _sora_view(task: SandboxTask) -> dict[str, Any]:
    image_url = task.image_urls[0] if task.image_urls else None
    return {
        "task_id": task.task_id,
        "model_code": task.model,
        "status": task.status,
        "progress": task.progress,
        "prompt": task.prompt,
        "image_url": image_url,
        "reference_image_url": image_url,
        "reference_image_name": task.reference_image_name,
        "video_url": task.result_url,
        "has_reference_image": image_url is not None,
        "has_video": task.result_url is not None,
        "error_message": task.error_message,
        "price_usd": task.price_usd,
        "refunded_usd": task.refunded_usd,
        "created_at": task.wall(task.created),
        "completed_at": None if task.finished is None else task.wall(task.finished),
    }


def _task_view(task: SandboxTask) -> dict[str, Any]:
    is_image = not task.is_video
    return {
        "task_id": task.task_id,
        "status": task.status,
        "model": task.model,
        "prompt": task.prompt,
        "progress": task.progress,
        "created_at": task.wall(task.created),
        "updated_at": task.wall(task.updated),
        "finished_at": None if task.finished is None else task.wall(task.finished),
        "image_url": task.image_urls[0] if task.image_urls else None,
        "video_url": None if is_image else task.result_url,
        "result_image_url": task.result_url if is_image else None,
        "expires_in": RESULT_EXPIRES_IN_S if is_image and task.result_url else None,
        "error_code": task.error_code,
        "error_message": task.error_message,
    }


def _fault_response(fault: InjectedFault) -> web.Response:
    response = web.Response(status=fault.status, body=fault.body, headers=fault.headers)
    response.content_type = fault.content_type
    return response


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


# -------------------------------------------------------------------- request parsing


def _is_video_model(model: str) -> bool:
    return model in VIDEO_MODELS or model.startswith(VEO_REF_PREFIX)


def _is_known_model(model: str) -> bool:
    return (
        model in DEFAULT_DURATIONS
        or model in NANOBANANA_ALIASES
        or model.startswith(VEO_REF_PREFIX)
    )


def _keyword_outcome(prompt: str) -> Outcome:
    lowered = prompt.lower()
    if "[fail]" in lowered:
        return "failed"
    if "[refund]" in lowered:
        return "refunded"
    return "succeeded"


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise _ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object.")
    return body


def _string(body: Mapping[str, Any], key: str) -> str | None:
    """An optional string field; null counts as absent."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _ApiError(400, f"{key} must be a string.")
    return value


def _required_string(body: Mapping[str, Any], key: str) -> str:
    value = _string(body, key)
    if value is None:
        raise _ApiError(400, f"{key} is required.")
    return value


def _check_image_url(url: str) -> None:
    if not url.startswith(("http://", "https://", "data:image/")):
        raise _ApiError(400, f"Image URL must be http(s) or a data:image URL, got {url[:40]!r}.")


def _read_messages(messages: Any) -> tuple[str, list[str]]:
    """The user text (joined) and image URLs of chat ``messages``; other roles are ignored."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise _ApiError(400, f"messages must be a list of 1-{MAX_MESSAGES} items.")
    texts: list[str] = []
    images: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _ApiError(400, "Each message must be an object with a role.")
        if message["role"] != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise _ApiError(400, "message content must be a string or a list of parts.")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str):
                    raise _ApiError(400, "image_url parts need image_url.url.")
                _check_image_url(url)
                images.append(url)
            else:
                raise _ApiError(400, "Content parts must be {type: text} or {type: image_url}.")
    prompt = "\n".join(text.strip() for text in texts if text.strip())
    if not prompt:
        raise _ApiError(400, "At least one user text prompt is required.")
    return prompt, images


def _normalise_ratio(value: str) -> str | None:
    ratio = value.strip().lower().replace("x", ":")
    return ratio if ratio in IMAGE_ASPECT_RATIOS else None


def _ratio_from_size(size: str) -> str | None:
    ratio = _normalise_ratio(size)
    if ratio is not None:
        return ratio
    parts = size.strip().lower().replace("*", "x").replace(":", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        return None
    target = int(parts[0]) / int(parts[1])
    return min(IMAGE_ASPECT_RATIOS, key=lambda r: abs(math.log(IMAGE_ASPECT_RATIOS[r] / target)))


def _image_options(body: Mapping[str, Any]) -> tuple[str, str]:
    """aspect_ratio (or size) and quality (or resolution_preset), normalised."""
    aspect = _string(body, "aspect_ratio")
    size = _string(body, "size")
    if aspect is not None:
        ratio = _normalise_ratio(aspect)
        if ratio is None:
            raise _ApiError(400, "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4.")
    elif size is not None:
        ratio = _ratio_from_size(size)
        if ratio is None:
            raise _ApiError(400, f"Cannot infer an aspect ratio from size {size!r}.")
    else:
        ratio = "16:9"
    tier = _string(body, "resolution_preset") or _string(body, "quality") or "2k"
    quality = QUALITY_TIERS.get(tier.strip().lower())
    if quality is None:
        raise _ApiError(400, "quality must be one of 1k, 2k, 4k, hd, ultra.")
    return ratio, quality


def _generation_images(body: Mapping[str, Any]) -> list[str]:
    images: list[str] = []
    for key in ("image1", "image2", "image3"):
        value = _string(body, key)
        if value:
            images.append(value)
    listed = body.get("images")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(i, str) for i in listed):
            raise _ApiError(400, "images must be a list of URLs.")
        images.extend(listed)
    if len(images) > MAX_IMAGE_REFERENCES:
        raise _ApiError(400, f"At most {MAX_IMAGE_REFERENCES} reference images are allowed.")
    for url in images:
        _check_image_url(url)
    return images


# -------------------------------------------------------------------- result files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(seed: str, aspect_ratio: str) -> bytes:
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


def _mp4_bytes(seed: str) -> bytes:
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


# -------------------------------------------------------------------- standalone


async def _serve(args: argparse.Namespace) -> None:
    async with SandboxGateway(
        host=args.host, port=args.port, api_key=args.api_key, speed=args.speed
    ) as gateway:
        print(f"sandbox gateway listening on {gateway.base_url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bot.sandbox --port 8095 [--api-key K] [--speed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox", description="Run the simulated AA gateway."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--api-key", default=None, help="require this X-API-Key (default: none)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="multiplies every task duration (0.5 = 2x faster)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
