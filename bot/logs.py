"""Logging, configured once in __main__: one line per event, never a key or a token."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["RedactingFilter", "redact", "redact_url", "setup_logging"]

# A Telegram bot token anywhere (Bot API and file URLs carry it): 123456:AA...
_TELEGRAM_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")
# A password in a URL: scheme://user:PASSWORD@host, or ?password=PASSWORD (libpq's form).
_URL_PASSWORD = re.compile(r"(://[^/:@?#]*:)[^/@?#]*@|([?&]password=)[^&#]*", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _TELEGRAM_TOKEN.sub("***", text)


def redact_url(url: str) -> str:
    """`url` with its password (if any) as ***, to name a database in a log line or error."""
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}***@" if m[1] else f"{m[2]}***", url)


class RedactingFilter(logging.Filter):
    """Replaces every secret in a record's final message (and its traceback) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        # Freeze the record: a library may mutate its lazy arguments after logging (PTB
        # rewrites a file_path into a URL with the token), and handlers format again later.
        record.msg, record.args = redact(record.getMessage(), self.secrets), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text, self.secrets)
            record.exc_info = None
        return True


def setup_logging(level: str, secrets: Iterable[str], *, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and a Telegram Bot API URL contains the token.
    for noisy in (
        "httpx",
        "httpcore",
        "aiohttp.access",
        "discord.gateway",
        "discord.http",
        "discord.webhook",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
