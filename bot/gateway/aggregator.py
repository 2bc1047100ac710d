"""Gateway B: an OpenAI-compatible aggregator whose image models run as async tasks.

Documented (seed 003, "所有画图(异步)"): `POST /v1/images/generations` (the page's example URL
says `/v1/images/edits`, hence AGGREGATOR_SUBMIT_PATH) with headers `Authorization: <key>`
(no Bearer) and `ModelName: <model>`, body `{"query": {"async": "true", "webhook": url},
"body": {"size", "prompt", "model", "n"}}`, answering `{"task_id"}`; then
`GET /v1/images/tasks/{task_id}` until it "includes the image URL(s)".

Not documented: the shape of that finished answer. We accept the common ones (`data[].url`,
`url` / `image_url` at the top or under `data` / `result`, `b64_json`), map any status
through the shared STATUS_MAP (an image with no status counts as done), and fail the job
clearly on anything else. A webhook is only a hint: bot/webhooks.py makes us poll.

Naming: a model is offered under its own name; if that name (or an alias) is already an AA
model, it is offered as `agg:<name>` instead. `agg:<name>` always works for every model.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from bot.catalog import Family, ModelSpec
from bot.config import AGGREGATOR_PREFIX, AggregatorModel, aggregator_name
from bot.errors import BadResponse, UpstreamRejected
from bot.gateway.base import STATUS_MAP, map_status
from bot.gateway.http import Observer, send
from bot.media import MediaStore
from bot.models import Job, JobState, Kind, TaskUpdate

__all__ = [
    "DEFAULT_PRICE_USD",
    "PREFIX",
    "PROVIDER",
    "SIZES",
    "SUBMIT_PATH",
    "TASK_PATH",
    "UNDERSTOOD",
    "AggregatorGateway",
    "aggregator_specs",
    "parse_task",
    "upstream_name",
]

log = logging.getLogger(__name__)

PROVIDER = "aggregator"
PREFIX = AGGREGATOR_PREFIX
SUBMIT_PATH = "/v1/images/generations"
TASK_PATH = "/v1/images/tasks/{task_id}"
SIZES: Mapping[str, str] = {"1:1": "1024x1024", "16:9": "1792x1024", "9:16": "1024x1792"}
DEFAULT_PRICE_USD = 0.04
TYPICAL_S = 30.0
UNDERSTOOD = "the aggregator answered in a shape genrelay does not understand"

_KNOWN_NAMES: Mapping[str, str] = {
    "nano-banana-2": "Nano Banana 2",
    "nano-banana": "Nano Banana",
    "flux": "Flux",
    "qwen-image": "Qwen Image",
    "qwen-image-edit": "Qwen Image Edit",
    "recraftv3": "Recraft V3",
    "sora_image": "Sora Image",
    "dall-e-3": "DALL·E 3",
    "gpt-image-1": "GPT Image 1",
}
_URL_KEYS = ("url", "image_url", "video_url")
_CONTAINERS = ("data", "result")
_STATUS_KEYS = ("status", "task_status", "state")
_ERROR_KEYS = ("error_message", "fail_reason", "error", "message")
_MAX_DEPTH = 4


# -- catalog -----------------------------------------------------------------------------------


def _display(name: str) -> str:
    known = _KNOWN_NAMES.get(name.lower())
    if known:
        return known
    return " ".join(w[:1].upper() + w[1:] for w in name.replace("_", "-").split("-") if w)


def upstream_name(spec: ModelSpec) -> str:
    """The model name the aggregator knows (our code without the `agg:` prefix)."""
    return aggregator_name(spec.code)


def aggregator_specs(
    entries: Iterable[AggregatorModel],
    *,
    taken: Iterable[ModelSpec],
    image_deadline_s: float = 600,
    video_deadline_s: float = 1800,
) -> list[ModelSpec]:
    """The catalog entries of AGGREGATOR_MODELS (Settings.aggregator_entries). A name another
    gateway already uses (as a code or an alias) becomes `agg:<name>`; every entry also
    answers to `agg:<name>`."""
    used: dict[str, str] = {}  # every name another gateway answers to -> its display name
    for spec in taken:
        for taken_name in (spec.code, *spec.aliases):
            used[taken_name.lower()] = spec.name
    specs: list[ModelSpec] = []
    for entry in entries:
        name = entry.name
        key = name.lower()
        clash = key in used
        kind = Kind(entry.kind)
        display = entry.display or (f"{used[key]} (aggregator)" if clash else _display(name))
        price = DEFAULT_PRICE_USD if entry.price_usd is None else entry.price_usd
        image = kind is Kind.IMAGE
        specs.append(
            ModelSpec(
                code=PREFIX + name if clash else name,
                name=display,
                kind=kind,
                family=Family.AGGREGATOR,
                description=f"{display} on the aggregator",
                price_usd=price,
                deadline_s=image_deadline_s if image else video_deadline_s,
                typical_s=TYPICAL_S,
                provider=PROVIDER,
                aliases=() if clash else (PREFIX + name,),
                aspect_ratios=tuple(SIZES) if image else (),
                default_aspect_ratio="1:1" if image else None,
            )
        )
    return specs


# -- parsing -----------------------------------------------------------------------------------


def _found(node: Any, depth: int = 0) -> list[tuple[str, str]]:
    """Results anywhere we look: ("url", https-url) or ("b64", base64 text), in order."""
    out: list[tuple[str, str]] = []
    if depth > _MAX_DEPTH:
        return out
    if isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                out += _as_result(item)
            else:
                out += _found(item, depth + 1)
        return out
    if not isinstance(node, dict):
        return out
    for key in _URL_KEYS:
        value = node.get(key)
        if isinstance(value, dict):  # OpenAI's {"image_url": {"url": ...}}
            value = value.get("url")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str):
                out += _as_result(v)
    b64 = node.get("b64_json")
    if isinstance(b64, str) and b64.strip():
        out.append(("b64", b64.strip()))
    for key in _CONTAINERS:
        if isinstance(node.get(key), dict | list):
            out += _found(node[key], depth + 1)
    return out


def _as_result(text: str) -> list[tuple[str, str]]:
    text = text.strip()
    if text.startswith(("https://", "http://")):
        return [("url", text)]
    if text.startswith("data:") and ";base64," in text[:100]:
        return [("b64", text.split(",", 1)[1])]
    return []  # never a file:, javascript: or relative link from upstream


def _nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    nested = [data.get(k) for k in _CONTAINERS]
    return [data, *(n for n in nested if isinstance(n, dict))]


def _first(data: dict[str, Any], keys: Sequence[str]) -> Any:
    for node in _nodes(data):
        for key in keys:
            value = node.get(key)
            if value not in (None, "", [], {}):
                return value
    return None


def _error_text(data: dict[str, Any]) -> str | None:
    value = _first(data, _ERROR_KEYS)
    if isinstance(value, dict):
        value = value.get("message") or value.get("msg")
    return str(value)[:300] if value else None


def _progress(value: Any) -> int | None:
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    try:
        return None if value is None else max(0, min(100, int(float(value))))
    except (TypeError, ValueError):
        return None


def _not_understood(data: Any, why: str) -> TaskUpdate:
    keys = ", ".join(sorted(str(k) for k in data)[:12]) if isinstance(data, dict) else "-"
    log.warning("%s (%s; fields: %s)", UNDERSTOOD, why, keys)
    return TaskUpdate(
        state=JobState.FAILED, progress=100, error_code="bad_response", error_message=UNDERSTOOD
    )


def parse_task(data: Any) -> tuple[TaskUpdate, list[tuple[str, str]]]:
    """A poll answer as our update, plus the results found (b64 ones still to be kept)."""
    if not isinstance(data, dict):
        return _not_understood(data, "not a JSON object"), []
    results = _found(data)
    status = _first(data, _STATUS_KEYS)
    progress = _progress(_first(data, ("progress",)))
    task_id = _first(data, ("task_id", "id"))
    if isinstance(status, str) and (status.strip().lower() in STATUS_MAP or not results):
        state = map_status(status)
    elif results:  # an image with no status, or a status word we do not know
        state = JobState.SUCCEEDED
    elif progress is not None:
        state = JobState.RUNNING
    else:
        return _not_understood(data, "no status, no result"), []
    if state is JobState.SUCCEEDED and not results:
        return _not_understood(data, f"status {status!r} without a result we know"), []
    update = TaskUpdate(
        state=state,
        task_id=str(task_id) if isinstance(task_id, str | int) else None,
        progress=100 if state is JobState.SUCCEEDED else progress,
        error_code=None,
        error_message=_error_text(data) if state in (JobState.FAILED, JobState.REFUNDED) else None,
    )
    return update, (results if state is JobState.SUCCEEDED else [])


# -- the client --------------------------------------------------------------------------------


class AggregatorGateway:
    """Client of the aggregator. Its key goes in `Authorization`, and nowhere else."""

    provider = PROVIDER

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str | None,
        media: MediaStore,
        submit_path: str = SUBMIT_PATH,
        task_path: str = TASK_PATH,
        webhook_base: str | None = None,
        timeout_s: float = 30.0,
        observe: Observer | None = None,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._key = api_key or ""
        self._media = media
        self._submit_path = "/" + submit_path.lstrip("/")
        self._task_path = "/" + task_path.lstrip("/")
        self._webhook_base = webhook_base.rstrip("/") if webhook_base else None
        self._timeout = timeout_s
        self._observe = observe

    @property
    def takes_webhooks(self) -> bool:
        """Whether jobs should get a webhook token (PUBLIC_BASE_URL is set)."""
        return self._webhook_base is not None

    async def _call(
        self, method: str, path: str, *, endpoint: str, model: str, body: Any = None
    ) -> Any:
        headers = {"ModelName": model}
        if self._key:
            headers["Authorization"] = self._key  # as the documentation shows: no "Bearer"
        return await send(
            self._client,
            method,
            self._base + path,
            endpoint=endpoint,
            headers=headers,
            json_body=body,
            timeout_s=self._timeout,
            secrets=(self._key,),
            observe=self._observe,
        )

    async def submit(self, job: Job, spec: ModelSpec, image_urls: Sequence[str]) -> TaskUpdate:
        model = upstream_name(spec)
        query: dict[str, str] = {"async": "true"}
        if self._webhook_base and job.webhook_token:
            query["webhook"] = f"{self._webhook_base}/{job.webhook_token}"
        body = {
            "query": query,
            "body": {
                "size": SIZES.get(job.aspect_ratio or "", SIZES["1:1"]),
                "prompt": job.prompt,
                "model": model,
                "n": 1,
            },
        }
        data = await self._call(
            "POST", self._submit_path, endpoint="agg.create", model=model, body=body
        )
        if not isinstance(data, dict):
            raise BadResponse(f"{UNDERSTOOD} (not a JSON object)", endpoint="agg.create")
        task_id = _first(data, ("task_id", "id"))
        if isinstance(task_id, str | int) and str(task_id).strip():
            return TaskUpdate(state=JobState.QUEUED, task_id=str(task_id), progress=0)
        if _found(data):  # answered with the image right away
            update, results = parse_task(data)
            return self._kept(job, update, results)
        refusal = _error_text(data)
        status = _first(data, _STATUS_KEYS)
        if refusal and (status is None or STATUS_MAP.get(str(status).lower()) is JobState.FAILED):
            # An error in a 2xx envelope and no task: nothing was created, nothing charged.
            raise UpstreamRejected(refusal, status=200, endpoint="agg.create")
        raise BadResponse(f"{UNDERSTOOD} (no task_id)", endpoint="agg.create")

    async def poll(self, job: Job, spec: ModelSpec) -> TaskUpdate:
        if not job.upstream_task_id:
            raise BadResponse("the job has no upstream task id to poll", endpoint="agg.poll")
        path = self._task_path.format(task_id=job.upstream_task_id)
        data = await self._call("GET", path, endpoint="agg.poll", model=upstream_name(spec))
        update, results = parse_task(data)
        return self._kept(job, update, results)

    def _kept(self, job: Job, update: TaskUpdate, results: list[tuple[str, str]]) -> TaskUpdate:
        """The update with its result URLs; base64 images become files in our media store."""
        if update.state is not JobState.SUCCEEDED:
            return update
        urls: list[str] = []
        for kind, value in results:
            if kind == "url":
                if value not in urls:
                    urls.append(value)
                continue
            try:
                data = base64.b64decode("".join(value.split()), validate=True)
            except (binascii.Error, ValueError):
                return _not_understood({"b64_json": "..."}, "b64_json is not base64")
            if not data:
                return _not_understood({"b64_json": ""}, "b64_json is empty")
            urls.append(self._media.keep_result(job.id, len(urls), data))
        return TaskUpdate(
            state=JobState.SUCCEEDED,
            task_id=update.task_id or job.upstream_task_id,
            progress=100,
            result_urls=tuple(urls),
        )
