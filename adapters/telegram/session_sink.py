"""Creative sessions on Telegram, as the core's SessionSink: the session card and the recap.

The card (theme, time left, entries, people, rules) is posted in the session's chat or forum
topic when the session loop first shows it, pinned where the bot may pin (a refusal is
logged, never shown), edited as the figures change, and unpinned once the session ended. The
card is cosmetic traffic: its message, edits, pin and unpin go through FloodControl's
status lanes, after results and replies, from what their budget leaves.

The recap is the top entries as one album (sendMediaGroup: up to 10 photos and videos, each
captioned with its credit; a single entry as one photo or video), then one message with the
figures and the gallery link (or how to get one). When Telegram will not take the album, the
message carries every credit instead. What went out is remembered for the session (in this
process), so a recap retried after a flood wait does not post its album twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import Bot, InputMediaPhoto, InputMediaVideo, Message
from telegram.constants import FileSizeLimit
from telegram.error import BadRequest, TelegramError

from adapters.telegram.lanes import status_traffic
from adapters.telegram.parse import PLATFORM
from adapters.telegram.sink import delivery_error
from adapters.telegram.status import not_modified, status_turn
from adapters.telegram.texts import MAX_TEXT, clip
from bot.errors import MediaError
from bot.messages import (
    entry_credit,
    gallery_link_text,
    recap_figures_text,
    recap_headline,
    recap_text,
    session_card_text,
)
from bot.models import Job, Kind
from bot.ports import Clock, ResultFile
from bot.sessions import Entry, Recap, Session, SessionFigures

__all__ = ["TelegramSessionSink"]

log = logging.getLogger(__name__)

MAX_CAPTION = 1024  # and for a caption
PHOTO_MAX_BYTES = FileSizeLimit.PHOTOSIZE_UPLOAD  # a larger image is left out of the album
ALBUM, NO_ALBUM, FIGURES = "album", "no album", "figures"  # the steps of a recap

Fetch = Callable[[Job], Awaitable[Sequence[ResultFile]]]
AlbumItem = InputMediaPhoto | InputMediaVideo


def _not_found(exc: BadRequest) -> bool:
    return "not found" in exc.message.lower()


class TelegramSessionSink:
    """`SessionSink` for platform "telegram". `fetch` gives a job's result files (the
    notifier's, our kept copies first); `clock` the time the card counts down from."""

    platform = PLATFORM

    def __init__(self, bot: Bot, fetch: Fetch, clock: Clock, *, upload_limit_mb: int) -> None:
        self.bot = bot
        self.fetch = fetch
        self.clock = clock
        self.upload_limit = upload_limit_mb * 1_000_000
        self._recaps: dict[str, set[str]] = {}  # session id -> the steps that went out

    @staticmethod
    def where(session: Session) -> dict[str, Any]:
        """The chat and forum topic of a session's messages."""
        kwargs: dict[str, Any] = {"chat_id": int(session.chat_id)}
        if session.thread_id is not None:
            kwargs["message_thread_id"] = int(session.thread_id)
        return kwargs

    # -- the card --------------------------------------------------------------------------

    async def show_card(self, figures: SessionFigures) -> str | None:
        """Post the card (and pin it) or edit it; once the session ended, its last edit and
        the unpin. Returns the id of a card it posted (a new one when the old was deleted)."""
        session = figures.session
        text = session_card_text(figures, self.clock.now())[:MAX_TEXT]
        try:
            if session.card_message_id is None:
                if not session.open:
                    return None  # it ended before its card was shown: the recap says it all
                return await self._post_card(session, text)
            card = int(session.card_message_id)
            if not await self._edit_card(session, card, text):  # deleted meanwhile
                return await self._post_card(session, text) if session.open else None
        except TelegramError as exc:
            raise delivery_error(exc) from None
        if not session.open:
            await self._pin(session, card, pin=False)
        return None

    async def _post_card(self, session: Session, text: str) -> str:
        async with status_turn(self.bot, int(session.chat_id), new=True):
            message = await self.bot.send_message(text=text, **self.where(session))
        log.info(
            "session %s: card %s in telegram chat %s",
            session.id,
            message.message_id,
            session.chat_id,
        )
        await self._pin(session, message.message_id, pin=True)
        return str(message.message_id)

    async def _edit_card(self, session: Session, card: int, text: str) -> bool:
        """Edit the card; False when it is gone (deleted by an admin)."""
        try:
            async with status_turn(self.bot, int(session.chat_id)):
                await self.bot.edit_message_text(
                    text, chat_id=int(session.chat_id), message_id=card
                )
        except BadRequest as exc:
            if not_modified(exc):
                return True
            if _not_found(exc):
                log.info("session %s: card %s is gone; posting it again", session.id, card)
                return False
            raise
        return True

    async def _pin(self, session: Session, card: int, *, pin: bool) -> None:
        """Pin (or unpin) the card where the bot may; a refusal is only logged."""
        chat = int(session.chat_id)
        try:
            with status_traffic():
                if pin:
                    await self.bot.pin_chat_message(chat, card, disable_notification=True)
                else:
                    await self.bot.unpin_chat_message(chat, card)
        except TelegramError as exc:
            log.info(
                "session %s: card %s not %s in telegram chat %s (%s)",
                session.id,
                card,
                "pinned" if pin else "unpinned",
                chat,
                exc,
            )

    # -- the recap -------------------------------------------------------------------------

    async def post_recap(self, recap: Recap) -> None:
        """The top entries as one album, then the figures and the gallery link. Raises
        DeliveryError (try again later) or PermanentDeliveryError."""
        session = recap.figures.session
        done = self._recaps.setdefault(session.id, set())
        try:
            if not done & {ALBUM, NO_ALBUM}:
                done.add(ALBUM if await self._album(recap) else NO_ALBUM)
            if FIGURES not in done:
                text = _closing_text(recap) if ALBUM in done else recap_text(recap)
                await self.bot.send_message(text=text[:MAX_TEXT], **self.where(session))
                done.add(FIGURES)
        except TelegramError as exc:
            raise delivery_error(exc) from None
        self._recaps.pop(session.id, None)

    async def _album(self, recap: Recap) -> bool:
        """Post the top entries' results with their credits; False when there was none to
        post or Telegram refused them (the figures message then credits every entry)."""
        session = recap.figures.session
        items = [item for entry in recap.top if (item := await self._item(entry)) is not None]
        if not items:
            return False
        where = self.where(session)
        try:
            if len(items) == 1:
                await self._single(items[0], where)
            else:
                await self.bot.send_media_group(media=items, **where)
        except BadRequest as exc:
            log.info("session %s: recap album refused (%s); credits in words", session.id, exc)
            return False
        log.info(
            "session %s: recap album of %d in telegram chat %s",
            session.id,
            len(items),
            session.chat_id,
        )
        return True

    async def _single(self, item: AlbumItem, where: dict[str, Any]) -> Message:
        """An album needs two items: one goes as a photo or video of its own."""
        if isinstance(item, InputMediaVideo):
            return await self.bot.send_video(
                video=item.media, caption=item.caption, supports_streaming=True, **where
            )
        return await self.bot.send_photo(photo=item.media, caption=item.caption, **where)

    async def _item(self, entry: Entry) -> AlbumItem | None:
        """The entry's first result, captioned with its credit; None when there is no copy
        of it to upload (gone, or too large for Telegram)."""
        try:
            files = await self.fetch(entry.job)
        except MediaError as exc:
            log.info("job %s: not in the recap album (%s)", entry.job.id, exc)
            return None
        f = files[0] if files else None
        if f is None or f.path is None or f.size is None:
            return None
        caption = clip(entry_credit(entry), MAX_CAPTION)
        is_video = f.mime.startswith("video/") or (not f.mime and entry.kind is Kind.VIDEO)
        limit = self.upload_limit if is_video else min(PHOTO_MAX_BYTES, self.upload_limit)
        if f.size > limit or not (is_video or f.mime.startswith("image/") or not f.mime):
            return None
        data = await asyncio.to_thread(f.path.read_bytes)
        if is_video:
            return InputMediaVideo(
                data, caption=caption, filename=f.filename, supports_streaming=True
            )
        return InputMediaPhoto(data, caption=caption, filename=f.filename)


def _closing_text(recap: Recap) -> str:
    """After the album (whose captions credit the entries): the figures and the gallery."""
    session = recap.figures.session
    return (
        f"{recap_headline(session)}\n{recap_figures_text(recap.figures)}\n\n"
        f"{gallery_link_text(session, recap.gallery_url)}"
    )
