"""A fake of Gateway B (the OpenAI-compatible aggregator) on loopback, speaking seed 003:

    POST /v1/images/generations (and /v1/images/edits)   headers Authorization: <key>, ModelName
         {"query": {"async": "true", "webhook": url?}, "body": {"size", "prompt", "model", "n"}}
         -> {"task_id": "..."}
    GET  /v1/images/tasks/{task_id}                       the task; when done, a result shape
    GET  /files/{name}                                    the PNG of a result

Tasks finish `duration` seconds after creation (real time). When one finishes it calls the
webhook it was given, if any (recorded in `webhook_calls`). The finished answer's shape is
scriptable (`SHAPES`, or any function), because the real one is not documented.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.helpers import PNG_1PX

Shape = Callable[["FakeTask", str, str], dict[str, Any]]

SUBMIT_PATHS = ("/v1/images/generations", "/v1/images/edits")
SIZES = {"1024x1024", "1792x1024", "1024x1792"}

SHAPES: dict[str, Shape] = {
    "data_url": lambda t, url, b64: {
        "task_id": t.task_id,
        "status": "succeeded",
        "data": [{"url": url}],
    },
    "url": lambda t, url, b64: {"task_id": t.task_id, "status": "completed", "url": url},
    "image_url": lambda t, url, b64: {"task_id": t.task_id, "status": "SUCCESS", "image_url": url},
    "nested_data": lambda t, url, b64: {
        "code": "success",
        "message": "",
        "data": {"task_id": t.task_id, "status": "SUCCESS", "progress": "100%", "url": url},
    },
    "nested_result": lambda t, url, b64: {
        "task_id": t.task_id,
        "status": "success",
        "result": {"image_url": url},
    },
    "result_data": lambda t, url, b64: {
        "task_id": t.task_id,
        "status": "succeeded",
        "result": {"data": [{"url": url}]},
    },
    "b64_json": lambda t, url, b64: {
        "task_id": t.task_id,
        "status": "succeeded",
        "data": [{"b64_json": b64}],
    },
    "no_status": lambda t, url, b64: {"created": 1800000000, "data": [{"url": url}]},
    "b64_no_status": lambda t, url, b64: {"b64_json": b64},
    # Shapes genrelay must refuse (clearly, not by waiting for the deadline):
    "unknown_field": lambda t, url, b64: {
        "task_id": t.task_id,
        "status": "succeeded",
        "output": {"images": [url]},
    },
    "nonsense": lambda t, url, b64: {"hello": "world"},
    "bad_b64": lambda t, url, b64: {"status": "succeeded", "data": [{"b64_json": "%%%not base64"}]},
}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    time: float


@dataclass
class Script:
    duration: float = 0.3
    shape: str | Shape = "data_url"
    outcome: str = "succeeded"  # or "failed"
    send_webhook: bool = True
    create_answer: dict[str, Any] | None = None  # answer the create call with this instead


@dataclass
class FakeTask:
    task_id: str
    model: str
    prompt: str
    size: str
    webhook: str | None
    script: Script
    created: float
    finished_at: float | None = None  # time.time() when it finished upstream
    polls: list[float] = field(default_factory=list)


class FakeAggregator:
    """Use as an async context manager; `base_url` is set once it listens."""

    def __init__(self, *, api_key: str, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        self.base_url = ""
        self.requests: list[Recorded] = []
        self.tasks: dict[str, FakeTask] = {}
        self.webhook_calls: list[tuple[str, int | str, float]] = []
        self._scripts: list[Script] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(middlewares=[self._record])
        for path in SUBMIT_PATHS:
            app.router.add_post(path, self._create)
        app.router.add_get("/v1/images/tasks/{task_id}", self._task)
        app.router.add_get("/files/{name}", self._file)
        self.app = app

    # -- control -----------------------------------------------------------------------------

    def script_next(self, **kwargs: Any) -> None:
        self._scripts.append(Script(**kwargs))

    def create_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def polls(self, task_id: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == "GET"
            and r.path.startswith("/v1/images/tasks/")
            and (task_id is None or r.path.endswith("/" + task_id))
        ]

    async def finish(self, task_id: str) -> None:
        """Finish a task now (and call its webhook)."""
        await self._finish(self.tasks[task_id])

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        port = server.sockets[0].getsockname()[1] if server is not None else 0  # type: ignore[attr-defined]
        self.base_url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- HTTP --------------------------------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                parsed,
                body,
                time.time(),
            )
        )
        if (
            not request.path.startswith("/files/")
            and request.headers.get("Authorization") != self.api_key
        ):
            return web.json_response({"error": {"message": "invalid key"}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _create(self, request: web.Request) -> web.Response:
        data = await request.json()
        query, body = data.get("query"), data.get("body")
        if (
            not isinstance(query, dict)
            or query.get("async") != "true"
            or not isinstance(body, dict)
        ):
            return web.json_response({"error": {"message": "bad request shape"}}, status=400)
        if set(body) != {"size", "prompt", "model", "n"} or body["n"] != 1:
            return web.json_response({"error": {"message": "bad body fields"}}, status=400)
        if body["size"] not in SIZES or request.headers.get("ModelName") != body["model"]:
            return web.json_response({"error": {"message": "bad size or model"}}, status=400)
        script = self._scripts.pop(0) if self._scripts else Script()
        if script.create_answer is not None:
            return web.json_response(script.create_answer)
        task = FakeTask(
            task_id=uuid.uuid4().hex,
            model=body["model"],
            prompt=body["prompt"],
            size=body["size"],
            webhook=query.get("webhook"),
            script=script,
            created=time.time(),
        )
        self.tasks[task.task_id] = task
        timer = asyncio.create_task(self._finish_later(task))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        return web.json_response({"task_id": task.task_id})

    async def _finish_later(self, task: FakeTask) -> None:
        await asyncio.sleep(task.script.duration)
        await self._finish(task)

    async def _finish(self, task: FakeTask) -> None:
        if task.finished_at is not None:
            return
        task.finished_at = time.time()
        if task.webhook and task.script.send_webhook:
            await self.call_webhook(task.webhook, {"task_id": task.task_id, "status": "done"})

    async def call_webhook(self, url: str, payload: Any = None, method: str = "POST") -> int:
        assert self._session is not None
        try:
            async with self._session.request(method, url, json=payload) as resp:
                status: int | str = resp.status
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        self.webhook_calls.append((url, status, time.time()))
        return status if isinstance(status, int) else 0

    async def _task(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return web.json_response({"error": {"message": "task not found"}}, status=404)
        task.polls.append(time.time())
        if task.finished_at is None:
            elapsed = time.time() - task.created
            progress = min(99, int(100 * elapsed / max(task.script.duration, 0.001)))
            status = "queued" if progress < 10 else "processing"
            return web.json_response(
                {"task_id": task.task_id, "status": status, "progress": progress}
            )
        if task.script.outcome == "failed":
            return web.json_response(
                {
                    "task_id": task.task_id,
                    "status": "failed",
                    "error": {"message": "blocked by the safety filter"},
                }
            )
        shape = task.script.shape
        build = SHAPES[shape] if isinstance(shape, str) else shape
        url = f"{self.base_url}/files/{task.task_id}.png"
        return web.json_response(build(task, url, base64.b64encode(PNG_1PX).decode()))

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG_1PX, content_type="image/png")
