"""How updates reach the adapter's Application: long polling (the default) or the webhook.

Both hand the handlers the same Update objects through PTB's `update_queue`, kept in the
store's inbox first (inbox.py) and marked done once handled (`InboxApplication`).

- `PollingIntake`: the updates a past process kept but did not finish, then PTB's
  `Updater.start_polling` (which calls deleteWebhook first, so switching back from webhook
  mode just works).
- `WebhookIntake`: `setWebhook` with the secret and the same allowed updates, then a loop
  that hands over what the inbox holds and is not done: at once when this process's route
  kept an update, and every `hook.drain_interval_s` for those another replica's route
  kept. Each is handed over once (the inbox skips what this process is handling)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

from telegram import Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, ExtBot

from adapters.telegram.inbox import TelegramInbox
from adapters.telegram.webhook import TelegramWebhook
from bot.errors import ConfigError, PlatformUnavailable

__all__ = ["ALLOWED_UPDATES", "Intake", "PollingIntake", "WebhookIntake"]

log = logging.getLogger(__name__)

App = Application[ExtBot[Any], Any, Any, Any, Any, Any]

ALLOWED_UPDATES = (Update.MESSAGE, Update.CALLBACK_QUERY)
PRUNE_EVERY_S = 3600.0  # done updates are forgotten (INBOX_KEPT_S after) this often


class Intake(Protocol):
    mode: str

    @property
    def running(self) -> bool: ...

    async def start(self, app: App) -> None:
        """Updates start flowing; PlatformUnavailable or ConfigError when Telegram refused."""
        ...

    async def stop(self) -> None:
        """No more updates are taken (those not taken stay for the next process)."""
        ...


async def replay(app: App, inbox: TelegramInbox) -> None:
    """Hand the updates a past process kept but did not finish to the handlers, before
    polling starts (Telegram may send some of them again: those are skipped)."""
    pending = await inbox.pending(app.bot)
    for update in pending:
        await app.update_queue.put(update)
    if pending:
        log.info("telegram: %d update(s) left unfinished before; handling them now", len(pending))


class PollingIntake:
    mode = "polling"

    def __init__(self, inbox: TelegramInbox | None, *, timeout_s: float) -> None:
        self.inbox = inbox
        self.timeout_s = timeout_s
        self._app: App | None = None

    @property
    def running(self) -> bool:
        app = self._app
        return bool(app and app.updater and app.updater.running)

    async def start(self, app: App) -> None:
        self._app = app
        if self.inbox is not None:
            await replay(app, self.inbox)
        assert app.updater is not None
        try:
            await app.updater.start_polling(
                timeout=dtm.timedelta(seconds=self.timeout_s),
                allowed_updates=list(ALLOWED_UPDATES),
            )
        except TelegramError as exc:  # deleteWebhook before polling failed
            raise PlatformUnavailable(f"Telegram did not start polling ({exc})") from None

    async def stop(self) -> None:
        app = self._app
        if app is not None and app.updater is not None and app.updater.running:
            await app.updater.stop()


class WebhookIntake:
    mode = "webhook"

    def __init__(
        self,
        hook: TelegramWebhook,
        inbox: TelegramInbox,
        *,
        url: str,
        secret: str,
    ) -> None:
        self.hook = hook
        self.inbox = inbox
        self.url = url
        self._secret = secret
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: float | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, app: App) -> None:
        try:
            await app.bot.set_webhook(
                self.url, secret_token=self._secret, allowed_updates=list(ALLOWED_UPDATES)
            )
        except BadRequest as exc:  # Telegram will not take this URL: trying again cannot help
            raise ConfigError(f"Telegram refused TELEGRAM_WEBHOOK_URL ({exc})") from None
        except TelegramError as exc:
            raise PlatformUnavailable(f"Telegram did not set the webhook ({exc})") from None
        parts = urlsplit(self.url)
        log.info("telegram: webhook set on %s://%s", parts.scheme, parts.hostname)
        self._task = asyncio.create_task(self._run(app), name="telegram-webhook-intake")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, app: App) -> None:
        while True:
            try:
                await self.drain_once(app)
            except Exception:  # the store did not answer: the next round tries again
                log.exception("telegram: the inbox could not be read")
            await self.hook.wait(self.hook.drain_interval_s)

    async def drain_once(self, app: App) -> int:
        """Hand every update kept and not done (and not being handled here) to the
        handlers; how many."""
        now = self.inbox.clock.now()
        prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S
        updates = await self.inbox.pending(app.bot, prune=prune)
        if prune:
            self._pruned_at = now
        for update in updates:
            await app.update_queue.put(update)
        if updates:
            log.debug("telegram: %d kept update(s) handed to the handlers", len(updates))
        return len(updates)
