"""Validation before anything is sent: every refusal with its code, in words a person
understands (bot/refusal_messages.py)."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass

from bot import refusal_messages as words
from bot.catalog import Catalog, ModelSpec, normalize_quality, normalize_ratio
from bot.errors import RequestRejected
from bot.models import GenerationRequest

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
        raise RequestRejected(words.unknown_model_text(req.model, hints), code="unknown_model")
    model = spec.sent_name(req.model)
    if spec.kind is not req.kind:
        raise RequestRejected(words.wrong_kind_text(spec.name, spec.kind), code="wrong_kind")
    return spec, model


def _check_prompt(prompt: str, spec: ModelSpec) -> None:
    if not prompt:
        raise RequestRejected(words.EMPTY_PROMPT, code="empty_prompt")
    if len(prompt) < spec.min_prompt:
        raise RequestRejected(
            words.prompt_too_short_text(spec.name, len(prompt), spec.min_prompt),
            code="prompt_too_short",
        )
    if len(prompt) > spec.max_prompt:
        raise RequestRejected(
            words.prompt_too_long_text(len(prompt), spec.max_prompt), code="prompt_too_long"
        )


def _check_images(req: GenerationRequest, spec: ModelSpec, max_image_bytes: int) -> None:
    for image in req.images:
        if not image.mime.startswith("image/"):
            raise RequestRejected(words.NOT_AN_IMAGE, code="not_an_image")
        if image.size is not None and image.size > max_image_bytes:
            raise RequestRejected(
                words.image_too_large_text(image.size, max_image_bytes), code="image_too_large"
            )
    count = len(req.images)
    if count > spec.max_images:
        raise RequestRejected(
            words.too_many_images_text(spec.name, spec.max_images, count),
            code="too_many_images",
        )
    if count < spec.min_images:
        raise RequestRejected(words.image_required_text(spec.name), code="image_required")


def _aspect_ratio(value: str | None, spec: ModelSpec) -> str | None:
    """The aspect ratio asked for, normalized; None when none was."""
    ratio = normalize_ratio(value) if value else None
    if ratio is None or ratio in spec.aspect_ratios:
        return ratio
    if not spec.aspect_ratios:
        raise RequestRejected(
            words.no_aspect_ratio_text(spec.name, full_names_take_one=bool(spec.alias_prefixes)),
            code="bad_aspect_ratio",
        )
    raise RequestRejected(
        words.aspect_ratio_choices_text(spec.name, spec.aspect_ratios, ratio),
        code="bad_aspect_ratio",
    )


def _quality(value: str | None, spec: ModelSpec) -> str | None:
    """The quality asked for, normalized; None when none was."""
    quality = normalize_quality(value) if value else None
    if quality is None or quality in spec.qualities:
        return quality
    if not spec.qualities:
        raise RequestRejected(words.no_quality_text(spec.name), code="bad_quality")
    raise RequestRejected(
        words.quality_choices_text(spec.name, spec.qualities, quality), code="bad_quality"
    )
