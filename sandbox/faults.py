"""What a test makes the sandbox do to a request: answer it with a canned fault, or run a
callable when it arrives."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.wire import RecordedRequest, error_body, error_type

__all__ = ["InjectedFault", "RequestHook", "fault_body", "fault_response"]


@dataclass
class InjectedFault:
    """A canned response for the next ``remaining`` requests matching method and path."""

    method: str
    path_prefix: str
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    remaining: int
    delay: float
    after_processing: bool
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.method in ("*", method.upper())
            and path.startswith(self.path_prefix)
        )


@dataclass
class RequestHook:
    """A callable run on the next request matching method and path, before it is handled."""

    method: str
    path_prefix: str
    hook: Callable[[RecordedRequest], Awaitable[None] | None]
    done: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (
            not self.done
            and self.method in ("*", method.upper())
            and path.startswith(self.path_prefix)
        )


def fault_body(status: int, body: bytes | str | dict[str, Any] | None) -> bytes:
    """The bytes a fault answers with; none given: the sandbox's own error body."""
    if body is None:
        body = error_body(f"Injected fault (HTTP {status})", error_type(status))
    if isinstance(body, dict):
        return json.dumps(body).encode()
    if isinstance(body, str):
        return body.encode()
    return body


def fault_response(fault: InjectedFault) -> web.Response:
    response = web.Response(status=fault.status, body=fault.body, headers=fault.headers)
    response.content_type = fault.content_type
    return response
