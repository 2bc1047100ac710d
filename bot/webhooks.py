"""Webhooks: `PUBLIC_BASE_URL/webhooks/<provider>/<token>`, one unguessable token per job.

A callback is a hint, never a result: its payload is not documented and anyone could send
one, so it is not read at all. It only makes the tracker poll that job's task now (at most
once a second per task, never twice at once: `Tracker.hurry`). Unknown tokens, tokens of
another provider and tokens of finished jobs ("used") get 404. Polling goes on regardless,
so a lost webhook only costs time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from aiohttp import web

from bot.catalog import Catalog
from bot.metrics import Metrics
from bot.models import Job

__all__ = ["WEBHOOK_PATH", "TokenLookup", "WebhookReceiver", "webhook_base"]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/{provider}/{token}"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def webhook_base(public_base_url: str | None, provider: str) -> str | None:
    """Where a provider's callbacks go, without the token; None without PUBLIC_BASE_URL."""
    return f"{public_base_url.rstrip('/')}/webhooks/{provider}" if public_base_url else None


class TokenLookup(Protocol):
    async def find_by_webhook_token(self, token: str) -> Job | None: ...


class WebhookReceiver:
    """The aiohttp handler behind WEBHOOK_PATH (POST, and GET for senders that use it)."""

    def __init__(
        self,
        store: TokenLookup,
        catalog: Catalog,
        hurry: Callable[[str], Awaitable[None]],
        *,
        providers: Collection[str],
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.hurry = hurry
        self.providers = set(providers)
        self.metrics = metrics

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_post(WEBHOOK_PATH, self.handle)
        router.add_get(WEBHOOK_PATH, self.handle, allow_head=False)

    async def job_for(self, provider: str, token: str) -> Job | None:
        """The unfinished job this token belongs to, if it belongs to this provider."""
        if provider not in self.providers or not _TOKEN.fullmatch(token):
            return None
        job = await self.store.find_by_webhook_token(token)
        if job is None or job.terminal:
            return None
        spec = self.catalog.resolve(job.model)
        if spec is None or spec.provider != provider:
            return None
        return job

    async def handle(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        job = await self.job_for(provider, request.match_info["token"])
        if job is None:
            if self.metrics is not None:
                self.metrics.webhook(provider, "unknown")
            raise web.HTTPNotFound()
        if self.metrics is not None:
            self.metrics.webhook(provider, "accepted")
        log.info("job %s: webhook from %s; polling its task now", job.id, provider)
        await self.hurry(job.id)
        return web.json_response({"ok": True})
