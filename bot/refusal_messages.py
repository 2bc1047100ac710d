"""The words of a request the catalog refuses before anything is sent: a model it does not
know or of the other kind, a prompt too short or too long, images it cannot take (not an
image, too large, unreadable, too many, none where one is needed), an aspect ratio or a
quality the model does not offer; and a reference image `genrelay generate` cannot fetch or
find. Re-exported by bot/messages.py (every sentence a chat user reads is reachable there);
kept in a module of their own, importing nothing but values, so bot/validation.py and
bot/media.py can say them without an import circle (bot/messages.py reaches
bot/validation.py through bot/community.py)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.models import Kind

__all__ = [
    "EMPTY_PROMPT",
    "NOT_AN_IMAGE",
    "UNREADABLE_IMAGE",
    "aspect_ratio_choices_text",
    "fetch_failed_text",
    "human_size",
    "image_required_text",
    "image_too_large_text",
    "no_aspect_ratio_text",
    "no_quality_text",
    "no_such_file_text",
    "prompt_too_long_text",
    "prompt_too_short_text",
    "quality_choices_text",
    "too_many_images_text",
    "unknown_model_text",
    "wrong_kind_text",
]


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    return f"{max(n // 1024, 1)} KB"


def _choices(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + f" or {values[-1]}"


# -- the model -------------------------------------------------------------------------------


def unknown_model_text(model: str, hints: Sequence[str]) -> str:
    """A model name the catalog does not know, with the names it may have meant."""
    hint = f" Did you mean {_choices(hints)}?" if hints else ""
    return f"I don't know the model “{model}”.{hint} See /models for the list."


def wrong_kind_text(model_name: str, kind: Kind) -> str:
    """A model of `kind` asked for by the other kind's command."""
    other = "/video" if kind is Kind.VIDEO else "/imagine"
    return (
        f"{model_name} makes {kind.value}s; use {other} for it, or pick another model from /models."
    )


# -- the prompt ------------------------------------------------------------------------------

EMPTY_PROMPT = "Your prompt is empty. Describe what you want, e.g. “a red fox in fresh snow”."


def prompt_too_short_text(model_name: str, length: int, minimum: int) -> str:
    return f"That prompt is {length} characters; {model_name} needs at least {minimum}."


def prompt_too_long_text(length: int, maximum: int) -> str:
    return f"That prompt is {length:,} characters; the limit is {maximum:,}. Please shorten it."


# -- images ----------------------------------------------------------------------------------


def fetch_failed_text(source: str, detail: str) -> str:
    """`genrelay generate -i URL`: the reference image could not be downloaded."""
    return f"I could not fetch {source}: {detail}."


def no_such_file_text(source: str) -> str:
    """`genrelay generate -i PATH`: no file there."""
    return f"There is no file {source}."


NOT_AN_IMAGE = "That file is not an image I can use. Send a JPEG, PNG, WebP or GIF."
UNREADABLE_IMAGE = (
    "That photo could not be read as an image; please send it again as a JPEG or PNG."
)


def image_too_large_text(size: int | None, limit: int) -> str:
    """An image over `limit` bytes; `size` None (or 0) when its size is not known."""
    size_text = f" is {human_size(size)}" if size else " is too large"
    return f"That image{size_text}; the limit is {human_size(limit)}. Try a smaller one."


def too_many_images_text(model_name: str, maximum: int, count: int) -> str:
    takes = (
        "does not take reference images"
        if maximum == 0
        else f"takes at most {maximum} reference image" + ("s" if maximum > 1 else "")
    )
    return f"{model_name} {takes}; you sent {count}. Send fewer, or pick another model."


def image_required_text(model_name: str) -> str:
    return (
        f"{model_name} needs a photo of your subject: attach one (or reply to one), "
        "or use veo_fast for video from text alone."
    )


# -- aspect ratio and quality ----------------------------------------------------------------


def no_aspect_ratio_text(model_name: str, *, full_names_take_one: bool) -> str:
    """A model that takes no aspect ratio; `full_names_take_one`: its full upstream names
    (the firefly-veo31-ref-* ones) do."""
    extra = (
        " For 9:16, use a full firefly-veo31-ref-* model name."
        if full_names_take_one
        else " Describe the framing in your prompt instead."
    )
    return f"{model_name} does not take an aspect ratio.{extra}"


def aspect_ratio_choices_text(model_name: str, choices: Sequence[str], ratio: str) -> str:
    return f"{model_name} takes aspect ratio {_choices(choices)}, not {ratio}."


def no_quality_text(model_name: str) -> str:
    return f"{model_name} does not take a quality setting."


def quality_choices_text(model_name: str, choices: Sequence[str], quality: str) -> str:
    return f"{model_name} takes quality {_choices(choices)}, not {quality}."
