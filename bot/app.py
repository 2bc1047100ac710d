"""Composes the core: store, HTTP client, gateways, tracker, notifier, service."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from types import TracebackType

import httpx

from bot.config import Settings
from bot.gateway.aa import AAGateway
from bot.gateway.base import Gateway
from bot.media import MediaStore
from bot.notifier import Notifier
from bot.polling import FixedPolicy, PollPolicy
from bot.ports import Clock, SystemClock
from bot.service import Service
from bot.tracker import Tracker, owner_alive
from storage.sqlite import SqliteJobStore

__all__ = ["Core"]

log = logging.getLogger(__name__)


class Core:
    """Everything platform-neutral, built from Settings. An async context manager:
    entering opens the store and HTTP client and recovers jobs a past process left."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        policy: PollPolicy | None = None,
        gateways: dict[str, Gateway] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.policy = policy or FixedPolicy(settings.poll_first_delay_s, settings.poll_interval_s)
        self._gateways = gateways
        self._stack = AsyncExitStack()
        self.catalog = settings.build_catalog()
        self.media = MediaStore(
            settings.data_dir,
            public_base_url=settings.public_base_url,
            max_reference_bytes=settings.max_reference_bytes,
        )

    async def __aenter__(self) -> Core:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _open(self) -> None:
        s = self.settings
        self.store = await self._stack.enter_async_context(SqliteJobStore(s.database_path))
        self.http = await self._stack.enter_async_context(
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                timeout=s.gateway_timeout_s,
                follow_redirects=False,
            )
        )
        key = s.aa_api_key.get_secret_value() if s.aa_api_key else None
        self.gateways: dict[str, Gateway] = self._gateways or {
            "aa": AAGateway(
                self.http,
                base_url=s.aa_base_url,
                api_key=key,
                timeout_s=s.gateway_timeout_s,
                sync_timeout_s=s.sync_timeout_s,
            )
        }
        self.notifier = Notifier(
            self.store,
            self.media,
            self.http,
            self.clock,
            max_attempts=s.delivery_max_attempts,
            progress_interval_s=s.progress_interval_s,
            result_max_bytes=s.result_max_bytes,
        )
        self.tracker = Tracker(
            self.store,
            self.gateways,
            self.catalog,
            self.media,
            self.policy,
            self.clock,
            concurrency=s.tracker_concurrency,
            sync_concurrency=s.sync_concurrency,
            on_progress=self.notifier.progress,
            on_terminal=lambda job: self.notifier.wake(),
        )
        self.service = Service(
            self.store,
            self.catalog,
            self.media,
            self.clock,
            wake_tracker=self.tracker.wake,
            max_image_bytes=s.max_reference_bytes,
        )
        interrupted = await self.store.recover(self.clock.now(), owner_alive=owner_alive)
        for job in interrupted:
            log.warning("job %s: was being submitted when a process stopped: interrupted", job.id)
        self.media.cleanup()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def run(self) -> None:
        """Run the tracker and the notifier until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.tracker.run(), name="tracker")
            tg.create_task(self.notifier.run(), name="notifier")
