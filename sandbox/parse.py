"""Reading a request's JSON body into one checked, frozen value per endpoint; a bad field is
an ``ApiError`` 400."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.wire import (
    GPT_IMAGE_MODEL,
    IMAGE_ASPECT_RATIOS,
    MAX_IMAGE_REFERENCES,
    MAX_MESSAGES,
    MAX_VIDEO_IMAGES,
    NANOBANANA_ALIASES,
    PROMPT_MAX,
    QUALITY_TIERS,
    SORA_FIELDS,
    SORA_MODELS,
    SORA_PROMPT_MIN,
    VIDEO_ASPECT_MODELS,
    VIDEO_ASPECT_RATIOS,
    ApiError,
    is_video_model,
)

__all__ = [
    "ChatRequest",
    "ImagesRequest",
    "SoraRequest",
    "chat_request",
    "check_image_url",
    "generation_images",
    "image_options",
    "images_request",
    "json_object",
    "read_messages",
    "required_string",
    "sora_request",
    "string",
]


@dataclass(frozen=True)
class SoraRequest:
    """``POST /api/v1/aa/openapi/sora/tasks``."""

    model: str
    prompt: str
    image_url: str | None
    reference_image_name: str | None


@dataclass(frozen=True)
class ChatRequest:
    """``POST /v1/chat/completions``: a video task, or an image made while the call waits."""

    model: str  # a nanobanana alias resolved
    prompt: str
    images: list[str]
    aspect_ratio: str
    quality: str | None  # None for a video
    is_video: bool


@dataclass(frozen=True)
class ImagesRequest:
    """``POST /v1/images/generations``: an image, synchronous or (``async``) a task."""

    model: str  # an alias resolved
    prompt: str
    images: list[str]
    aspect_ratio: str
    quality: str
    is_async: bool


def sora_request(body: Mapping[str, Any]) -> SoraRequest:
    extra = sorted(set(body) - SORA_FIELDS)
    if extra:
        raise ApiError(
            400,
            f"Unsupported field(s): {', '.join(extra)}. Only prompt, model_code, "
            "image_url and reference_image_name are accepted.",
        )
    prompt = required_string(body, "prompt")
    if not SORA_PROMPT_MIN <= len(prompt.strip()) <= PROMPT_MAX:
        raise ApiError(400, f"prompt must be {SORA_PROMPT_MIN}-{PROMPT_MAX} characters long.")
    model = string(body, "model_code") or "sora_studio"
    if model not in SORA_MODELS:
        raise ApiError(400, f"Unknown model_code {model!r}; use sora_studio or sora_fast.")
    image_url = string(body, "image_url")
    if image_url is not None:
        check_image_url(image_url)
    return SoraRequest(model, prompt, image_url, string(body, "reference_image_name"))


def chat_request(body: Mapping[str, Any]) -> ChatRequest:
    model = required_string(body, "model")
    if not (is_video_model(model) or model == GPT_IMAGE_MODEL or model in NANOBANANA_ALIASES):
        raise ApiError(400, f"Unknown model {model!r}.", code="model_not_found")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "stream must be a boolean.")
    if stream:
        raise ApiError(400, "stream=true is not supported by the sandbox gateway.")
    prompt, images = read_messages(body.get("messages"))
    if is_video_model(model):
        if len(images) > MAX_VIDEO_IMAGES:
            raise ApiError(400, f"At most {MAX_VIDEO_IMAGES} reference images are allowed.")
        aspect = "16:9"
        if model in VIDEO_ASPECT_MODELS:
            aspect = string(body, "aspect_ratio") or "16:9"
            if aspect not in VIDEO_ASPECT_RATIOS:
                raise ApiError(400, "aspect_ratio must be 16:9 or 9:16.")
        return ChatRequest(model, prompt, images, aspect, None, is_video=True)
    if len(images) > MAX_IMAGE_REFERENCES:
        raise ApiError(400, f"At most {MAX_IMAGE_REFERENCES} reference images are allowed.")
    if model == GPT_IMAGE_MODEL:
        aspect, quality = "1:1", "2k"  # documented as unreliable here: not validated
    else:
        model = NANOBANANA_ALIASES[model]
        aspect, quality = image_options(body)
    return ChatRequest(model, prompt, images, aspect, quality, is_video=False)


def images_request(body: Mapping[str, Any]) -> ImagesRequest:
    requested = required_string(body, "model")
    model = NANOBANANA_ALIASES.get(requested)
    if model is None:
        raise ApiError(
            400,
            f"Unknown model {requested!r} for /v1/images/generations.",
            code="model_not_found",
        )
    prompt = required_string(body, "prompt")
    if not 1 <= len(prompt.strip()) <= PROMPT_MAX:
        raise ApiError(400, f"prompt must be 1-{PROMPT_MAX} characters long.")
    aspect, quality = image_options(body)
    images = generation_images(body)
    num_images = body.get("num_images")
    if num_images is not None and (
        isinstance(num_images, bool) or not isinstance(num_images, int) or num_images != 1
    ):
        raise ApiError(400, "num_images: only 1 image per request is supported.")
    is_async = body.get("async", False)
    if is_async is not None and not isinstance(is_async, bool):
        raise ApiError(400, "async must be a boolean.")
    return ImagesRequest(model, prompt, images, aspect, quality, is_async=bool(is_async))


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def string(body: Mapping[str, Any], key: str) -> str | None:
    """An optional string field; null counts as absent."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string.")
    return value


def required_string(body: Mapping[str, Any], key: str) -> str:
    value = string(body, key)
    if value is None:
        raise ApiError(400, f"{key} is required.")
    return value


def check_image_url(url: str) -> None:
    if not url.startswith(("http://", "https://", "data:image/")):
        raise ApiError(400, f"Image URL must be http(s) or a data:image URL, got {url[:40]!r}.")


def read_messages(messages: Any) -> tuple[str, list[str]]:
    """The user text (joined) and image URLs of chat ``messages``; other roles are ignored."""
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise ApiError(400, f"messages must be a list of 1-{MAX_MESSAGES} items.")
    texts: list[str] = []
    images: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, "Each message must be an object with a role.")
        if message["role"] != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise ApiError(400, "message content must be a string or a list of parts.")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if not isinstance(url, str):
                    raise ApiError(400, "image_url parts need image_url.url.")
                check_image_url(url)
                images.append(url)
            else:
                raise ApiError(400, "Content parts must be {type: text} or {type: image_url}.")
    prompt = "\n".join(text.strip() for text in texts if text.strip())
    if not prompt:
        raise ApiError(400, "At least one user text prompt is required.")
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


def image_options(body: Mapping[str, Any]) -> tuple[str, str]:
    """aspect_ratio (or size) and quality (or resolution_preset), normalised."""
    aspect = string(body, "aspect_ratio")
    size = string(body, "size")
    if aspect is not None:
        ratio = _normalise_ratio(aspect)
        if ratio is None:
            raise ApiError(400, "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4.")
    elif size is not None:
        ratio = _ratio_from_size(size)
        if ratio is None:
            raise ApiError(400, f"Cannot infer an aspect ratio from size {size!r}.")
    else:
        ratio = "16:9"
    tier = string(body, "resolution_preset") or string(body, "quality") or "2k"
    quality = QUALITY_TIERS.get(tier.strip().lower())
    if quality is None:
        raise ApiError(400, "quality must be one of 1k, 2k, 4k, hd, ultra.")
    return ratio, quality


def generation_images(body: Mapping[str, Any]) -> list[str]:
    images: list[str] = []
    for key in ("image1", "image2", "image3"):
        value = string(body, key)
        if value:
            images.append(value)
    listed = body.get("images")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(i, str) for i in listed):
            raise ApiError(400, "images must be a list of URLs.")
        images.extend(listed)
    if len(images) > MAX_IMAGE_REFERENCES:
        raise ApiError(400, f"At most {MAX_IMAGE_REFERENCES} reference images are allowed.")
    for url in images:
        check_image_url(url)
    return images
