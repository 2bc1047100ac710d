"""The error tree of genrelay.

GenrelayError
 ├── RequestRejected          our validation refused a request; nothing was sent
 ├── DuplicateRequest         a job with this request key is recorded already (job_id)
 ├── ConfigError              the service is configured wrongly (exit 2; retrying cannot help)
 ├── PlatformUnavailable      a chat platform could not be reached at start (network, 5xx,
 │                            no READY in time); `genrelay run` tries again with backoff
 ├── GatewayError             an upstream call failed (status, detail, endpoint)
 │    ├── AuthError           401/403: the API key is wrong
 │    ├── QuotaError          402 or a quota message: the account is out of credit
 │    ├── TaskNotFound        404 on a task
 │    ├── UpstreamRejected    other 4xx: the gateway refused the request (its message)
 │    ├── RateLimited         429, with retry_after
 │    ├── UpstreamUnavailable 5xx
 │    ├── UpstreamTimeout     no answer in time; `sent` says whether it may have arrived
 │    ├── ConnectFailed       the request never left (connection refused, DNS)
 │    └── BadResponse         a body that is not the JSON we expect (an HTML error page)
 ├── DeliveryError            a chat platform refused a delivery; retry_after if it said
 │    └── PermanentDeliveryError  retrying cannot help (chat gone, no permission)
 └── MediaError               a download failed or was too large
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadResponse",
    "ConfigError",
    "ConnectFailed",
    "DeliveryError",
    "DuplicateRequest",
    "GatewayError",
    "GenrelayError",
    "MediaError",
    "PermanentDeliveryError",
    "PlatformUnavailable",
    "QuotaError",
    "RateLimited",
    "RequestRejected",
    "TaskNotFound",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class GenrelayError(Exception):
    """Base of every error genrelay raises on purpose."""


class RequestRejected(GenrelayError):
    """A request failed our validation. `message` is written for the person who asked."""

    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.job_id: str | None = None  # the rejected job recorded for it, if one was


class DuplicateRequest(GenrelayError):
    """The store already holds a job for this request key: `job_id` is that job."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job for this request is recorded already: {job_id}")
        self.job_id = job_id


class ConfigError(GenrelayError):
    """The service's configuration cannot work. Its words are one line for the operator."""


class PlatformUnavailable(GenrelayError):
    """A chat platform did not answer at start; it may later. Its words are one line,
    never with a token."""


class GatewayError(GenrelayError):
    """An upstream call failed."""

    code = "upstream_error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.endpoint = endpoint
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" from {self.endpoint}" if self.endpoint else ""
        status = f"HTTP {self.status}" if self.status is not None else type(self).__name__
        return f"{status}{where}: {self.detail}"


class AuthError(GatewayError):
    code = "auth"


class QuotaError(GatewayError):
    code = "quota"


class TaskNotFound(GatewayError):
    code = "task_not_found"


class UpstreamRejected(GatewayError):
    code = "rejected"


class RateLimited(GatewayError):
    code = "rate_limited"


class UpstreamUnavailable(GatewayError):
    code = "unavailable"


class UpstreamTimeout(GatewayError):
    code = "timeout"

    def __init__(self, detail: str, *, sent: bool, endpoint: str = "") -> None:
        super().__init__(detail, endpoint=endpoint)
        self.sent = sent


class ConnectFailed(GatewayError):
    code = "connect"


class BadResponse(GatewayError):
    code = "bad_response"


class DeliveryError(GenrelayError):
    """A chat platform did not take a message; it may take it later."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The chat cannot take this message, ever (chat gone, bot removed, no permission)."""


class MediaError(GenrelayError):
    """A download failed, or a file was not what we accept."""
