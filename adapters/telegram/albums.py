"""Albums: Telegram sends each photo of an album as its own update sharing a media_group_id.
The collector gathers them until no new one arrived for `debounce_s`, then hands over the
whole album at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

__all__ = ["AlbumCollector"]

log = logging.getLogger(__name__)

AlbumHandler = Callable[[list[Message]], Awaitable[None]]


@dataclass
class _Album:
    messages: list[Message] = field(default_factory=list)
    last_seen: float = 0.0


class AlbumCollector:
    """`add(message)` returns at once; `on_album(messages)` runs in a task of this collector,
    with the album's messages in order. `aclose()` cancels what is still waiting."""

    def __init__(self, debounce_s: float, on_album: AlbumHandler) -> None:
        self.debounce_s = debounce_s
        self._on_album = on_album
        self._albums: dict[tuple[int, str], _Album] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, message: Message) -> None:
        if message.media_group_id is None:
            raise ValueError("not part of an album")
        key = (message.chat.id, message.media_group_id)
        now = asyncio.get_running_loop().time()
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album()
            task = asyncio.create_task(self._flush_later(key), name=f"album-{key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        album.messages.append(message)
        album.last_seen = now

    async def _flush_later(self, key: tuple[int, str]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            album = self._albums[key]
            delay = album.last_seen + self.debounce_s - loop.time()
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        del self._albums[key]  # a late photo starts a new album
        messages = sorted(album.messages, key=lambda m: m.message_id)
        try:
            await self._on_album(messages)
        except Exception:
            log.exception("telegram: album %s in chat %s failed", key[1], key[0])

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._albums.clear()
