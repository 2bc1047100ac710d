"""Validation before anything is sent: every refusal in words a person understands."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass

from bot.catalog import Catalog, ModelSpec, normalize_quality, normalize_ratio
from bot.errors import RequestRejected
from bot.media import human_size
from bot.models import GenerationRequest, Kind

__all__ = ["Checked", "clean_request", "clean_text", "validate"]

# Tabs and line breaks read as spaces; other control characters (NUL, escapes, C1), bidi
# overrides and isolates (U+202E shows a caption backwards), stray surrogates, noncharacters
# and byte order marks are dropped. Joiners (U+200D in emoji) and variation selectors stay.
_SPACES = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class Checked:
    spec: ModelSpec
    model: str  # the name we store and send (a code, or a full upstream name)
    aspect_ratio: str | None
    quality: str | None


def _choices(values: tuple[str, ...]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + f" or {values[-1]}"


def _kept(ch: str) -> bool:
    if ch in _BIDI:
        return False
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:  # noncharacters
        return False
    return unicodedata.category(ch) not in ("Cc", "Cs") and ch != "\ufeff"


def clean_text(text: str) -> str:
    """`text` without the characters that must never go upstream or back into a chat."""
    if text.isprintable():
        return text
    return "".join(filter(_kept, _SPACES.sub(" ", text)))


def clean_request(req: GenerationRequest) -> GenerationRequest:
    """The request with its typed words cleaned (see `clean_text`)."""

    def clean(value: str | None) -> str | None:
        return clean_text(value) if value is not None else None

    cleaned = dataclasses.replace(
        req,
        prompt=clean_text(req.prompt),
        model=clean(req.model),
        aspect_ratio=clean(req.aspect_ratio),
        quality=clean(req.quality),
    )
    return req if cleaned == req else cleaned


def validate(req: GenerationRequest, catalog: Catalog, *, max_image_bytes: int) -> Checked:
    """Resolve the model and check every field; raises RequestRejected. Words are checked
    as `clean_text` leaves them (the service records them so)."""
    req = clean_request(req)
    spec, model = _model(req, catalog)
    _check_prompt(req.prompt.strip(), spec)
    _check_images(req, spec, max_image_bytes)
    ratio = _aspect_ratio(req.aspect_ratio, spec)
    quality = _quality(req.quality, spec)
    return Checked(
        spec=spec,
        model=model,
        aspect_ratio=ratio or spec.default_aspect_ratio,
        quality=quality or spec.default_quality,
    )


def _model(req: GenerationRequest, catalog: Catalog) -> tuple[ModelSpec, str]:
    """The model asked for (or the kind's default), and the name we store and send."""
    if not req.model:
        default = catalog.default_for(req.kind)
        return default, default.code
    spec = catalog.resolve(req.model)
    if spec is None:
        hints = catalog.suggest(req.model, req.kind)
        hint = f" Did you mean {_choices(tuple(hints))}?" if hints else ""
        raise RequestRejected(
            f"I don't know the model “{req.model}”.{hint} See /models for the list.",
            code="unknown_model",
        )
    model = spec.sent_name(req.model)
    if spec.kind is not req.kind:
        other = "/video" if spec.kind is Kind.VIDEO else "/imagine"
        raise RequestRejected(
            f"{spec.name} makes {spec.kind.value}s; use {other} for it, or pick "
            f"another model from /models.",
            code="wrong_kind",
        )
    return spec, model


def _check_prompt(prompt: str, spec: ModelSpec) -> None:
    if not prompt:
        raise RequestRejected(
            "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”.",
            code="empty_prompt",
        )
    if len(prompt) < spec.min_prompt:
        raise RequestRejected(
            f"That prompt is {len(prompt)} characters; {spec.name} needs at least "
            f"{spec.min_prompt}.",
            code="prompt_too_short",
        )
    if len(prompt) > spec.max_prompt:
        raise RequestRejected(
            f"That prompt is {len(prompt):,} characters; the limit is {spec.max_prompt:,}. "
            "Please shorten it.",
            code="prompt_too_long",
        )


def _check_images(req: GenerationRequest, spec: ModelSpec, max_image_bytes: int) -> None:
    for image in req.images:
        if not image.mime.startswith("image/"):
            raise RequestRejected(
                "That file is not an image I can use. Send a JPEG, PNG, WebP or GIF.",
                code="not_an_image",
            )
        if image.size is not None and image.size > max_image_bytes:
            raise RequestRejected(
                f"That image is {human_size(image.size)}; the limit is "
                f"{human_size(max_image_bytes)}. Try a smaller one.",
                code="image_too_large",
            )
    count = len(req.images)
    if count > spec.max_images:
        takes = (
            "does not take reference images"
            if spec.max_images == 0
            else f"takes at most {spec.max_images} reference image"
            + ("s" if spec.max_images > 1 else "")
        )
        raise RequestRejected(
            f"{spec.name} {takes}; you sent {count}. Send fewer, or pick another model.",
            code="too_many_images",
        )
    if count < spec.min_images:
        raise RequestRejected(
            f"{spec.name} needs a photo of your subject: attach one (or reply to one), "
            "or use veo_fast for video from text alone.",
            code="image_required",
        )


def _aspect_ratio(value: str | None, spec: ModelSpec) -> str | None:
    """The aspect ratio asked for, normalized; None when none was."""
    ratio = normalize_ratio(value) if value else None
    if ratio is None or ratio in spec.aspect_ratios:
        return ratio
    if not spec.aspect_ratios:
        extra = (
            " For 9:16, use a full firefly-veo31-ref-* model name."
            if spec.alias_prefixes
            else " Describe the framing in your prompt instead."
        )
        raise RequestRejected(
            f"{spec.name} does not take an aspect ratio.{extra}", code="bad_aspect_ratio"
        )
    raise RequestRejected(
        f"{spec.name} takes aspect ratio {_choices(spec.aspect_ratios)}, not {ratio}.",
        code="bad_aspect_ratio",
    )


def _quality(value: str | None, spec: ModelSpec) -> str | None:
    """The quality asked for, normalized; None when none was."""
    quality = normalize_quality(value) if value else None
    if quality is None or quality in spec.qualities:
        return quality
    if not spec.qualities:
        raise RequestRejected(f"{spec.name} does not take a quality setting.", code="bad_quality")
    raise RequestRejected(
        f"{spec.name} takes quality {_choices(spec.qualities)}, not {quality}.",
        code="bad_quality",
    )
