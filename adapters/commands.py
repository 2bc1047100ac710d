"""The shared command grammar: "/imagine a fox --ar 9:16 --model nanobanana_pro --quality 4k".

Used by Telegram and by any text-command fallback, so every platform reads options alike.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.catalog import Catalog
from bot.errors import RequestRejected
from bot.validation import clean_text

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

# What phones make of "-": hyphens and dashes U+2010-U+2015, the minus sign, small and
# fullwidth hyphen-minus. A lone em or en dash at the start of an option is what "--" became.
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
_DOUBLED = frozenset("\u2013\u2014")


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    prompt: str
    model: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None


def _split(text: str) -> list[str]:
    # Plain whitespace: quotes belong to the prompt ("a sign that says "OPEN"").
    return text.split()


def _as_option(token: str) -> str:
    """`token` with a phone's dashes before an option name turned back into "--": "—ar",
    "‐‐ar", "－－ａｒ". A token that still names no option is kept as typed (a dash in the
    prompt stays a dash)."""
    if not token or token[0] not in _DASHES:
        return token
    head = len(token) - len(token.lstrip("".join(_DASHES) + "-"))
    dashes, rest = token[:head], token[head:]
    ascii_dashes = "--" if dashes in _DOUBLED else "-" * len(dashes)  # one "—" was "--"
    flag, eq, value = rest.partition("=")
    option = ascii_dashes + unicodedata.normalize("NFKC", flag)
    if option.lower() not in _FLAGS:
        return token
    return option + eq + value


def parse_command_text(text: str, catalog: Catalog | None = None) -> ParsedCommand:
    """Parse the words after a command. A first word that names a model (`/video veo a cat`)
    picks that model. Raises RequestRejected for an unknown or incomplete option."""
    words: list[str] = []
    values: dict[str, str] = {}
    tokens = [_as_option(token) for token in _split(text)]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=")
        if flag.startswith("-") and len(flag) > 1 and not flag[1:].replace(".", "").isdigit():
            key = _FLAGS.get(flag.lower())
            if key is None:
                raise RequestRejected(
                    f"I don't know the option {clean_text(flag)}. Options are: {OPTIONS_HELP}.",
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
