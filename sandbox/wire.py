"""The gateway's HTTP API as the sandbox speaks it: paths, model vocabularies, limits, the
error body, and a request as it was received.

The API is Gateway A of ``/work/shared/upstream-api.md``; the JSON bodies the sandbox
answers with are drawn in ``sandbox.views``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CHAT_PATH",
    "CREATE_PATHS",
    "FAIL_CODE",
    "FAIL_MESSAGE",
    "FILES_PREFIX",
    "GPT_IMAGE_MODEL",
    "IMAGES_PATH",
    "IMAGE_ASPECT_RATIOS",
    "MAX_BODY_BYTES",
    "MAX_IMAGE_REFERENCES",
    "MAX_MESSAGES",
    "MAX_VIDEO_IMAGES",
    "NANOBANANA_ALIASES",
    "PROMPT_MAX",
    "QUALITY_TIERS",
    "REFUND_CODE",
    "REFUND_MESSAGE",
    "RESULT_EXPIRES_IN_S",
    "SORA_CREATE_PATH",
    "SORA_FIELDS",
    "SORA_MODELS",
    "SORA_POLL_PREFIX",
    "SORA_PRICE_USD",
    "SORA_PROMPT_MIN",
    "TASK_POLL_PREFIX",
    "VEO_REF_PREFIX",
    "VIDEO_ASPECT_MODELS",
    "VIDEO_ASPECT_RATIOS",
    "VIDEO_MODELS",
    "ApiError",
    "LinkStyle",
    "RecordedRequest",
    "error_body",
    "error_type",
    "is_video_model",
]

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
MAX_BODY_BYTES = 32 * 1024 * 1024

FAIL_CODE = "content_policy"
FAIL_MESSAGE = "The prompt was blocked by the content safety filter. You were not charged."
REFUND_CODE = "upstream_error"
REFUND_MESSAGE = "The upstream model failed to generate a result; the charge was refunded."


class ApiError(Exception):
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


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def is_video_model(model: str) -> bool:
    return model in VIDEO_MODELS or model.startswith(VEO_REF_PREFIX)


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
