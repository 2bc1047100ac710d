"""The JSON bodies the sandbox answers with: a task in each family's shape, and the answers
of the create endpoints."""

from __future__ import annotations

from typing import Any

from sandbox.tasks import SandboxTask
from sandbox.wire import RESULT_EXPIRES_IN_S

__all__ = [
    "chat_completion",
    "image_task_created",
    "images_result",
    "sora_view",
    "task_view",
    "video_task_created",
]


def sora_view(task: SandboxTask) -> dict[str, Any]:
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


def task_view(task: SandboxTask) -> dict[str, Any]:
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


def video_task_created(task: SandboxTask) -> dict[str, Any]:
    """``POST /v1/chat/completions`` for a video model: the task, as it is now."""
    return {
        "id": task.task_id,
        "object": "video.task",
        "created": task.created_unix,
        "model": task.model,
        "task": task_view(task),
    }


def image_task_created(task: SandboxTask) -> dict[str, Any]:
    """``POST /v1/images/generations`` with ``async: true``: a queued task."""
    return {
        "id": task.task_id,
        "object": "video.task",
        "created": task.created_unix,
        "model": task.model,
        "task": {
            "task_id": task.task_id,
            "status": "queued",
            "progress": 0,
            "result_image_url": None,
        },
    }


def chat_completion(task: SandboxTask, content: str) -> dict[str, Any]:
    """``POST /v1/chat/completions`` for an image model: the assistant's answer."""
    return {
        "id": task.task_id,
        "object": "chat.completion",
        "created": task.created_unix,
        "model": task.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


def images_result(task: SandboxTask, url: str) -> dict[str, Any]:
    """``POST /v1/images/generations``, synchronous: the image's URL."""
    return {"created": task.created_unix, "model": task.model, "data": [{"url": url}]}
