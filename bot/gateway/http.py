"""The one place where HTTP becomes our errors."""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.errors import (
    AuthError,
    BadResponse,
    ConnectFailed,
    GatewayError,
    QuotaError,
    RateLimited,
    TaskNotFound,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["Observer", "check_response", "parse_retry_after", "send"]

# Told of every call: its endpoint name, and the error it ended in (None: it succeeded).
Observer = Callable[[str, GatewayError | None], None]

_QUOTA_WORDS = re.compile(r"quota|insufficient|balance|credit|余额|额度", re.IGNORECASE)
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _detail(resp: httpx.Response, body: Any) -> str:
    """The upstream's own words about a failure, short."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "msg", "error", "error_message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list | dict) and value:
                return json.dumps(value, ensure_ascii=False)[:300]
    text = resp.text.strip()
    if "<html" in text[:500].lower() or "<!doctype" in text[:100].lower():
        title = _TITLE.search(text)
        if title:
            return f"an HTML error page ({html.unescape(title.group(1)).strip()[:120]})"
        return "an HTML error page"
    text = _TAGS.sub("", text)
    return text[:300] or resp.reason_phrase or "no details"


def check_response(resp: httpx.Response, *, endpoint: str, secrets: tuple[str, ...] = ()) -> Any:
    """Return the JSON body of a successful response; raise the matching GatewayError."""
    status = resp.status_code
    try:
        body: Any = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if 200 <= status < 300:
        if body is None:
            raise BadResponse(
                f"the gateway answered HTTP {status} with a body that is not JSON: "
                f"{_redact(_detail(resp, None), secrets)[:120]}",
                status=status,
                endpoint=endpoint,
            )
        return body
    detail = _redact(_detail(resp, body), secrets)
    kwargs: dict[str, Any] = {"status": status, "endpoint": endpoint}
    if status in (401, 403):
        raise AuthError(detail, **kwargs)
    if status == 402 or (400 <= status < 500 and status != 429 and _QUOTA_WORDS.search(detail)):
        raise QuotaError(detail, **kwargs)
    if status == 404:
        raise TaskNotFound(detail, **kwargs)
    if status == 429:
        retry = parse_retry_after(resp.headers.get("Retry-After"))
        if retry is None and isinstance(body, dict):
            value = body.get("retry_after")
            retry = float(value) if isinstance(value, int | float) else None
        raise RateLimited(detail, retry_after=retry, **kwargs)
    if 400 <= status < 500:
        raise UpstreamRejected(detail, **kwargs)
    raise UpstreamUnavailable(detail, **kwargs)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    endpoint: str,
    headers: dict[str, str],
    json_body: Any = None,
    timeout_s: float,
    secrets: tuple[str, ...] = (),
    observe: Observer | None = None,
) -> Any:
    """One HTTP call, every failure mapped to a GatewayError; `observe` counts it."""
    try:
        body = await _exchange(
            client, method, url, endpoint, headers, json_body, timeout_s, secrets
        )
    except GatewayError as exc:
        if observe is not None:
            observe(endpoint, exc)
        raise
    if observe is not None:
        observe(endpoint, None)
    return body


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    endpoint: str,
    headers: dict[str, str],
    json_body: Any,
    timeout_s: float,
    secrets: tuple[str, ...],
) -> Any:
    try:
        resp = await client.request(method, url, headers=headers, json=json_body, timeout=timeout_s)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise ConnectFailed(
            f"could not connect ({type(exc).__name__})", endpoint=endpoint
        ) from None
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(
            f"no answer within {timeout_s:g} s ({type(exc).__name__})", sent=True, endpoint=endpoint
        ) from None
    except httpx.TransportError as exc:
        raise UpstreamTimeout(
            f"the connection broke ({type(exc).__name__})", sent=True, endpoint=endpoint
        ) from None
    return check_response(resp, endpoint=endpoint, secrets=secrets)
