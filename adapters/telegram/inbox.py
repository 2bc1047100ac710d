"""No update lost, none handled twice. python-telegram-bot tells Telegram it has an update
only by asking getUpdates for the next offset (also once more in `Updater.stop()`), so each
update is kept in the store's inbox inside `get_updates`, before PTB sees it: by the time
Telegram forgets it, it is on disk. It is marked done when its handling finished (its job
recorded, or its refusal answered); an album's photos when the album was handled. A new
process replays what is not done; one that arrives again (Telegram sends an unconfirmed
update again after a restart) is skipped, and the core finds the job a message already
made by its request key, so a replay never makes a second job.

In webhook mode (webhook.py) the HTTP route of any replica keeps each update the same way
before it answers Telegram, and the adapter running here reads what is not done
(`pending`, skipping what it is handling already) and hands it to the same handlers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application, ExtBot

from bot.ports import Clock, InboxStore

__all__ = ["INBOX_KEPT_S", "InboxApplication", "InboxBot", "TelegramInbox", "inbox_source"]

log = logging.getLogger(__name__)

INBOX_KEPT_S = 2 * 24 * 3600  # done updates kept this long (Telegram resends for a day)


def inbox_source(token: str) -> str:
    """The inbox's source for a bot: `telegram:<bot id>` (the token's public half)."""
    return f"telegram:{token.partition(':')[0]}"


class TelegramInbox:
    """The store's inbox for one bot, and which updates this process may handle."""

    def __init__(self, store: InboxStore, clock: Clock, source: str) -> None:
        self.store = store
        self.clock = clock
        self.source = source  # inbox_source(token)
        self._admitted: set[int] = set()  # kept or replayed here, not handled yet
        self.deferred: set[int] = set()  # handled later (a photo of an album being collected)
        self._taken: set[int] = set()  # read from the inbox here and not marked done yet

    async def keep(self, updates: Sequence[Update]) -> None:
        """Write the updates before Telegram may forget them; only new ones will be handled."""
        items: list[tuple[int, str]] = []
        for u in updates:
            try:
                items.append((u.update_id, u.to_json()))
            except (TypeError, ValueError):  # never stall polling on one odd update
                log.exception("telegram: update %s not recorded; handled unrecorded", u.update_id)
                self._admitted.add(u.update_id)
        try:
            new = await self.store.inbox_add(self.source, items, self.clock.now())
        except Exception as exc:
            # Not kept, so not confirmed: PTB retries getUpdates with the same offset.
            raise TelegramError(f"updates not recorded ({type(exc).__name__})") from exc
        self._admitted.update(new)
        if len(new) < len(items):
            log.info("telegram: %d update(s) had come before; handled once", len(items) - len(new))

    def admit(self, update: Update) -> bool:
        """Whether this process should handle the update (once)."""
        if update.update_id in self._admitted:
            self._admitted.discard(update.update_id)
            return True
        return False

    async def done(self, update_ids: Iterable[int]) -> None:
        ids = [i for i in update_ids if i not in self.deferred]
        try:
            await self.store.inbox_done(self.source, ids, self.clock.now())
        except Exception:  # handled, but replayed after a restart: the core dedupes it
            log.exception("telegram: updates %s not marked done", ids)
        else:
            self._taken.difference_update(ids)

    async def finish_deferred(self, update_ids: Iterable[int]) -> None:
        ids = list(update_ids)
        self.deferred.difference_update(ids)
        await self.done(ids)

    async def pending(self, bot: ExtBot[Any], *, prune: bool = True) -> list[Update]:
        """Updates kept (by a past process, or by any process's webhook route) and not done,
        oldest first, but for those this process took already and is handling: each is
        admitted here. `prune`: forget the ones done long ago first."""
        if prune:
            await self.store.inbox_prune(self.clock.now() - INBOX_KEPT_S)
        updates: list[Update] = []
        for update_id, payload in await self.store.inbox_pending(self.source):
            if update_id in self._taken:
                continue
            try:
                update = Update.de_json(json.loads(payload), bot)
            except Exception:
                log.exception("telegram: kept update %s unreadable; dropped", update_id)
                await self.store.inbox_done(self.source, [update_id], self.clock.now())
                continue
            self._admitted.add(update.update_id)
            self._taken.add(update_id)
            updates.append(update)
        return updates


class InboxBot(ExtBot[Any]):
    """ExtBot whose get_updates keeps every update in the inbox before returning it."""

    def __init__(self, *args: Any, inbox: TelegramInbox, **kwargs: Any) -> None:
        self._inbox = inbox  # a private name: set before the bot freezes its attributes
        super().__init__(*args, **kwargs)

    async def get_updates(self, *args: Any, **kwargs: Any) -> tuple[Update, ...]:
        updates = await super().get_updates(*args, **kwargs)
        await self._inbox.keep(updates)
        return updates


class InboxApplication(Application[ExtBot[Any], Any, Any, Any, Any, Any]):
    """Handles only admitted updates, and marks each done once its handlers returned (a
    handler's error was logged by then; a cancelled one is left for the next process)."""

    _inbox: TelegramInbox | None = None

    def use_inbox(self, inbox: TelegramInbox) -> None:
        self._inbox = inbox

    async def process_update(self, update: object) -> None:
        inbox = self._inbox
        if inbox is None or not isinstance(update, Update):
            await super().process_update(update)
            return
        if not inbox.admit(update):
            log.info("telegram: update %s came again; not handled twice", update.update_id)
            return
        await super().process_update(update)
        await inbox.done([update.update_id])
