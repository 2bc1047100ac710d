"""The shared command grammar: "/imagine a fox --ar 9:16 --model nanobanana_pro --quality 4k".

Used by Telegram and by any text-command fallback, so every platform reads options alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Catalog
from bot.errors import RequestRejected

__all__ = ["OPTIONS_HELP", "ParsedCommand", "parse_command_text"]

_FLAGS = {
    "--model": "model",
    "-m": "model",
    "--ar": "aspect_ratio",
    "--aspect": "aspect_ratio",
    "--aspect-ratio": "aspect_ratio",
    "--aspect_ratio": "aspect_ratio",
    "--quality": "quality",
    "--q": "quality",
    "-q": "quality",
}
OPTIONS_HELP = "--model NAME, --ar 16:9, --quality 4k"


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None


def _split(text: str) -> list[str]:
    # Plain whitespace: quotes belong to the prompt ("a sign that says "OPEN"").
    return text.split()


def parse_command_text(text: str, catalog: Catalog | None = None) -> ParsedCommand:
    """Parse the words after a command. A first word that names a model (`/video veo a cat`)
    picks that model. Raises RequestRejected for an unknown or incomplete option."""
    words: list[str] = []
    values: dict[str, str] = {}
    tokens = _split(text.replace("—", "--").replace("–", "--"))
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=")
        if flag.startswith("-") and len(flag) > 1 and not flag[1:].replace(".", "").isdigit():
            key = _FLAGS.get(flag.lower())
            if key is None:
                raise RequestRejected(
                    f"I don't know the option {flag}. Options are: {OPTIONS_HELP}.",
                    code="unknown_option",
                )
            if eq:
                value = inline
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                raise RequestRejected(
                    f"The option {flag} needs a value, e.g. {flag} "
                    f"{ {'model': 'nanobanana_pro', 'aspect_ratio': '9:16'}.get(key, '4k') }.",
                    code="option_without_value",
                )
            values[key] = value.strip()
        else:
            words.append(token)
        i += 1
    if (
        catalog is not None
        and "model" not in values
        and len(words) > 1
        and catalog.resolve(words[0]) is not None
    ):
        values["model"] = words.pop(0)
    return ParsedCommand(
        prompt=" ".join(words).strip(),
        model=values.get("model") or None,
        aspect_ratio=values.get("aspect_ratio") or None,
        quality=values.get("quality") or None,
    )
