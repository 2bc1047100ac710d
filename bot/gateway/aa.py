"""The AA model gateway: four endpoint families behind one client."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx

from bot import messages
from bot.catalog import Family, ModelSpec
from bot.errors import BadResponse
from bot.gateway.base import task_update
from bot.gateway.http import Observer, send
from bot.models import Job, JobState, TaskUpdate

__all__ = ["AAGateway", "extract_image_urls"]

log = logging.getLogger(__name__)

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\((\S+?)\)")
_BARE_URL = re.compile(r"https?://[^\s)\]>\"']+")

SORA_CREATE = "/api/v1/aa/openapi/sora/tasks"
SORA_TASK = "/api/v1/aa/sora/tasks/{task_id}"
CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
TASK = "/v1/tasks/{task_id}"


def extract_image_urls(content: Any) -> list[str]:
    """Image links in a chat completion's content: markdown image links, else bare URLs."""
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("image_url"), dict):
                    parts.append(str(part["image_url"].get("url", "")))
                elif isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        content = "\n".join(parts)
    if not isinstance(content, str):
        return []
    found = _MD_IMAGE.findall(content) or _BARE_URL.findall(content)
    out: list[str] = []
    for url in found:
        url = url.rstrip(".,;")
        if url not in out:
            out.append(url)
    return out


def _user_content(prompt: str, image_urls: Sequence[str]) -> str | list[dict[str, Any]]:
    if not image_urls:
        return prompt
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    parts += [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
    return parts


class AAGateway:
    """Client of the AA gateway. Shares one httpx.AsyncClient; `X-API-Key` on every call."""

    provider = "aa"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float = 30.0,
        sync_timeout_s: float = 300.0,
        observe: Observer | None = None,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._key = api_key or ""
        self._timeout = timeout_s
        self._sync_timeout = sync_timeout_s
        self._observe = observe

    async def _call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        body: Any = None,
        timeout_s: float | None = None,
    ) -> Any:
        headers = {"X-API-Key": self._key} if self._key else {}
        return await send(
            self._client,
            method,
            self._base + path,
            endpoint=endpoint,
            headers=headers,
            json_body=body,
            timeout_s=timeout_s or self._timeout,
            secrets=(self._key,),
            observe=self._observe,
        )

    # -- submit ------------------------------------------------------------------------------

    async def submit(self, job: Job, spec: ModelSpec, image_urls: Sequence[str]) -> TaskUpdate:
        if spec.family is Family.SORA:
            return await self._submit_sora(job, image_urls)
        if spec.family is Family.VEO_CHAT:
            return await self._submit_veo(job, spec, image_urls)
        if spec.family is Family.GPT_IMAGE_CHAT:
            return await self._submit_gpt_image(job, spec, image_urls)
        return await self._submit_nanobanana(job, spec, image_urls)

    async def _submit_sora(self, job: Job, image_urls: Sequence[str]) -> TaskUpdate:
        body: dict[str, Any] = {"prompt": job.prompt, "model_code": job.model}
        if image_urls:
            body["image_url"] = image_urls[0]
            name = job.images[0].filename if job.images else None
            if name:
                body["reference_image_name"] = name
        data = await self._call("POST", SORA_CREATE, endpoint="sora.create", body=body)
        return self._task(data, ("video_url",), endpoint="sora.create")

    async def _submit_veo(self, job: Job, spec: ModelSpec, image_urls: Sequence[str]) -> TaskUpdate:
        body: dict[str, Any] = {
            "model": spec.sent_name(job.model),
            "stream": False,
            "messages": [{"role": "user", "content": _user_content(job.prompt, image_urls)}],
        }
        if job.aspect_ratio and spec.aspect_ratios:
            body["aspect_ratio"] = job.aspect_ratio
        data = await self._call("POST", CHAT, endpoint="video.create", body=body)
        return self._task(data, ("video_url",), endpoint="video.create")

    async def _submit_gpt_image(
        self, job: Job, spec: ModelSpec, image_urls: Sequence[str]
    ) -> TaskUpdate:
        prompt = job.prompt
        if job.aspect_ratio and spec.ratio_in_prompt:
            prompt = f"{prompt}\n\nAspect ratio {job.aspect_ratio}."
        body = {
            "model": spec.sent_name(job.model),
            "messages": [{"role": "user", "content": _user_content(prompt, image_urls)}],
        }
        data = await self._call(
            "POST", CHAT, endpoint="image.chat", body=body, timeout_s=self._sync_timeout
        )
        return self._chat_result(data, endpoint="image.chat")

    async def _submit_nanobanana(
        self, job: Job, spec: ModelSpec, image_urls: Sequence[str]
    ) -> TaskUpdate:
        body: dict[str, Any] = {"model": spec.sent_name(job.model), "prompt": job.prompt}
        if job.aspect_ratio:
            body["aspect_ratio"] = job.aspect_ratio
        if job.quality:
            body["quality"] = job.quality
        if image_urls:
            body["images"] = list(image_urls)
        body["async"] = True
        data = await self._call("POST", IMAGES, endpoint="image.create", body=body)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            # The gateway answered synchronously after all.
            urls = [str(d["url"]) for d in data["data"] if isinstance(d, dict) and d.get("url")]
            if urls:
                return TaskUpdate(state=JobState.SUCCEEDED, result_urls=tuple(urls), progress=100)
        return self._task(data, ("result_image_url",), endpoint="image.create")

    # -- poll --------------------------------------------------------------------------------

    async def poll(self, job: Job, spec: ModelSpec) -> TaskUpdate:
        if not job.upstream_task_id:
            raise BadResponse("the job has no upstream task id to poll", endpoint="poll")
        if spec.family is Family.SORA:
            path, keys, endpoint = SORA_TASK, ("video_url",), "sora.poll"
        elif spec.kind.value == "video":
            path, keys, endpoint = TASK, ("video_url",), "video.poll"
        else:
            path, keys, endpoint = TASK, ("result_image_url",), "image.poll"
        data = await self._call("GET", path.format(task_id=job.upstream_task_id), endpoint=endpoint)
        return self._task(data, keys, endpoint=endpoint)

    # -- parsing -----------------------------------------------------------------------------

    @staticmethod
    def _task(data: Any, result_keys: Sequence[str], *, endpoint: str) -> TaskUpdate:
        if not isinstance(data, dict):
            raise BadResponse(
                "the gateway answered with JSON that is not an object", endpoint=endpoint
            )
        inner = data.get("task")
        task: dict[str, Any] = inner if isinstance(inner, dict) else data
        if not task.get("task_id") and data.get("id") and "task" in data:
            task = {**task, "task_id": data["id"]}
        if not task.get("task_id"):
            raise BadResponse("the gateway's answer has no task_id", endpoint=endpoint)
        return task_update(task, result_keys)

    @staticmethod
    def _chat_result(data: Any, *, endpoint: str) -> TaskUpdate:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BadResponse(
                "the gateway's chat completion has no message content", endpoint=endpoint
            ) from None
        urls = extract_image_urls(content)
        if not urls:
            return TaskUpdate(
                state=JobState.FAILED,
                progress=100,
                error_code="no_image",
                error_message=messages.NO_IMAGE_ANSWERED,
            )
        return TaskUpdate(state=JobState.SUCCEEDED, progress=100, result_urls=tuple(urls))
