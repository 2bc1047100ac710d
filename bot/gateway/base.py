"""What the core needs from a gateway, and the status vocabularies mapped onto job states."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from bot.catalog import ModelSpec
from bot.models import Job, JobState, TaskUpdate

__all__ = ["STATUS_MAP", "Gateway", "map_status", "task_update"]

log = logging.getLogger(__name__)

STATUS_MAP: dict[str, JobState] = {
    "queued": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "submitted": JobState.QUEUED,
    "not_start": JobState.QUEUED,
    "processing": JobState.RUNNING,
    "running": JobState.RUNNING,
    "in_progress": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "succeeded": JobState.SUCCEEDED,
    "success": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "failure": JobState.FAILED,
    "error": JobState.FAILED,
    "cancelled": JobState.FAILED,
    "canceled": JobState.FAILED,
    "refunded": JobState.REFUNDED,
}


def map_status(status: object) -> JobState:
    key = str(status or "").strip().lower()
    state = STATUS_MAP.get(key)
    if state is None:
        log.warning("unknown upstream status %r; treating it as running", status)
        return JobState.RUNNING
    return state


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _progress(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else max(0, min(100, int(f)))


def task_update(task: dict[str, Any], result_keys: Sequence[str]) -> TaskUpdate:
    """A task object of any family as a TaskUpdate. Success needs a result URL: a task that
    says it is done without one is still running (the late-URL quirk)."""
    state = map_status(task.get("status"))
    urls = tuple(
        str(task[k]) for k in result_keys if isinstance(task.get(k), str) and task[k].strip()
    )
    if state is JobState.SUCCEEDED and not urls:
        state = JobState.RUNNING
    error_message = task.get("error_message") or task.get("error") or None
    if isinstance(error_message, dict):
        error_message = error_message.get("message")
    expires = task.get("expires_in")
    return TaskUpdate(
        state=state,
        task_id=str(task["task_id"]) if task.get("task_id") is not None else None,
        progress=_progress(task.get("progress")),
        result_urls=urls if state is JobState.SUCCEEDED else (),
        price_usd=_float(task.get("price_usd")),
        refunded_usd=_float(task.get("refunded_usd")),
        error_code=str(task["error_code"]) if task.get("error_code") else None,
        error_message=str(error_message) if error_message else None,
        expires_in=int(expires) if isinstance(expires, int | float) else None,
    )


class Gateway(Protocol):
    """One upstream API. Raises bot.errors.GatewayError subclasses."""

    provider: str

    async def submit(self, job: Job, spec: ModelSpec, image_urls: Sequence[str]) -> TaskUpdate:
        """Create the task. Synchronous families return the terminal update."""
        ...

    async def poll(self, job: Job, spec: ModelSpec) -> TaskUpdate: ...
