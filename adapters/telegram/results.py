"""Messages about a job in its chat: replies to the asker's message (`reply`, `target`), and
a job's outcome posted (`ResultPoster`).

One result, one message: an image goes as a photo whose keyboard has 📎 Original, which
sends the uncompressed file on demand (`send_original`). When Telegram refuses an upload
(IMAGE_PROCESS_FAILED, PHOTO_INVALID_DIMENSIONS, another 400, a 5xx twice, 413) the next
way is tried: photo (or video), document, then a link in a text message. A 5xx or a
request without an answer (a timeout) is tried once more at once, never a third time:
after a timeout the message may have arrived, so a second one moves on to the link, never
to another upload. When every way failed, `NotPosted` says so: the job is undeliverable."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import html
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import FileSizeLimit, ParseMode
from telegram.error import BadRequest, TimedOut

from adapters.telegram.texts import (
    MAX_TEXT,
    ORIGINAL_NOTE,
    entry_buttons,
    fallback_note,
    link_note,
    mention_html,
    result_buttons,
)
from adapters.telegram.transport import ServerRefused, Unanswered
from bot.catalog import Catalog
from bot.messages import entry_label, failure_text, result_caption
from bot.models import Job, JobState, Kind, Origin
from bot.ports import ResultFile
from bot.sessions import Entry

__all__ = ["NotPosted", "ResultPoster", "Steps", "reply", "target"]

log = logging.getLogger(__name__)

PHOTO_MAX_BYTES = FileSizeLimit.PHOTOSIZE_UPLOAD  # larger images go as documents only
TOO_LARGE_STATUS = 413
SEND_RETRIES = 1  # after a 5xx or no answer; a timed-out send may have arrived: never twice

# The ways a result file goes to a chat, in the order they are tried.
PHOTO, VIDEO, DOCUMENT, LINK = "photo", "video", "document", "link"
UPLOADS = (PHOTO, VIDEO, DOCUMENT)
# Why a way is not tried again: Telegram refused it; the file is too large for any upload
# (413); it may have arrived (no answer twice), so no other upload is tried either.
REFUSED, TOO_LARGE, UNSURE = "refused", "too large", "unsure"


def target(origin: Origin, reply_to: int | None = None) -> dict[str, Any]:
    """chat, forum topic and reply parameters of every message about `origin`."""
    kwargs: dict[str, Any] = {"chat_id": int(origin.chat_id)}
    if origin.thread_id is not None:
        kwargs["message_thread_id"] = int(origin.thread_id)
    message_id = reply_to or (int(origin.message_id) if origin.message_id else None)
    if message_id is not None:
        kwargs["reply_parameters"] = ReplyParameters(
            message_id=message_id, allow_sending_without_reply=True
        )
    return kwargs


async def reply(
    bot: Bot,
    origin: Origin,
    text: str,
    *,
    html_text: bool = False,
    markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
) -> Message:
    """A text reply to the origin's message (plain text unless `html_text`)."""
    return await bot.send_message(
        text=text[:MAX_TEXT],
        parse_mode=ParseMode.HTML if html_text else None,
        reply_markup=markup,
        **target(origin, reply_to),
    )


class _Refused(Exception):
    """Telegram did not take a message this way (`reason`: REFUSED, TOO_LARGE, UNSURE)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class NotPosted(Exception):
    """Every way of posting it failed: retrying cannot help."""


@dataclass(slots=True)
class Steps:
    """What a delivery did so far (kept between its attempts in this process): the
    messages that went out, by way and file ("photo:0"), and the ways not to try again."""

    sent: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def blocked(self, index: int) -> bool:
        """No upload of file `index` is tried any more (too large, or one may be there)."""
        return any(self.skipped.get(f"{way}:{index}") in (TOO_LARGE, UNSURE) for way in UPLOADS)


def _is_image(f: ResultFile, job: Job) -> bool:
    return f.mime.startswith("image/") or (not f.mime and job.kind is Kind.IMAGE)


def _is_video(f: ResultFile, job: Job) -> bool:
    return f.mime.startswith("video/") or (not f.mime and job.kind is Kind.VIDEO)


def _size(f: ResultFile) -> int | None:
    return f.size if f.size is not None else (f.path.stat().st_size if f.path else None)


class ResultPoster:
    """Posts a job's results (or its failure) as replies to the asker's message, the first
    way Telegram takes; `Steps` keeps what went out, so a retried delivery never sends a
    part twice."""

    def __init__(
        self,
        bot: Bot,
        catalog: Catalog,
        *,
        upload_limit_mb: int,
        entries: Callable[[str], Awaitable[Entry | None]] | None = None,
    ) -> None:
        self.bot = bot
        self.catalog = catalog
        self.upload_limit_mb = upload_limit_mb
        self.upload_limit = upload_limit_mb * 1_000_000
        # Reads the session entry a job is, if any: its result carries its label and votes.
        self.entries = entries
        self._entries: dict[str, Entry] = {}  # the entries whose results are being sent

    async def send_again(self, job: Job, files: Sequence[ResultFile], origin: Origin) -> None:
        """A stored result once more (/history), as a reply to `origin`'s message: the same
        caption and buttons as its first delivery, without pinging its asker again."""
        again = dataclasses.replace(job, origin=origin)
        try:
            await self.send_results(again, files, Steps(), mention=False)
        except NotPosted as exc:
            log.info("job %s: not sent again (%s)", job.id, exc)
            return
        log.info("job %s: sent again to telegram chat %s", job.id, origin.chat_id)

    async def send_original(
        self, job: Job, files: Sequence[ResultFile], origin: Origin, reply_to: int
    ) -> None:
        """The uncompressed files of an image result (📎 Original pressed), as documents
        replying to the result message; a link where one is too large to upload or
        Telegram refuses it."""
        for f in files:
            where = target(origin, reply_to=reply_to)
            size = _size(f)
            note = link_note(job.kind, size, self.upload_limit_mb)
            if f.path is not None and size is not None and size <= self.upload_limit:
                data = await asyncio.to_thread(f.path.read_bytes)
                try:
                    send = functools.partial(
                        self.bot.send_document,
                        document=data,
                        caption=ORIGINAL_NOTE,
                        filename=f.filename,
                        disable_content_type_detection=True,
                        **where,
                    )
                    message = await self._attempt(send)
                except _Refused as exc:
                    log.info("job %s: original not sent as a file (%s)", job.id, exc)
                    if exc.reason == UNSURE:
                        continue  # it may be there
                    note = fallback_note(job.kind, unsure=False)
                else:
                    log.info(
                        "job %s: original sent to telegram chat %s (%s)",
                        job.id,
                        origin.chat_id,
                        message.message_id,
                    )
                    continue
            await reply(self.bot, origin, f"{note}\n{f.url}", reply_to=reply_to)

    async def _find_entry(self, job: Job) -> None:
        """A session entry's result carries its label and vote button: look it up (the
        result goes without them when that fails)."""
        if self.entries is None or job.state is not JobState.SUCCEEDED:
            return
        try:
            entry = await self.entries(job.id)
        except Exception:
            log.exception("job %s: its session entry not read", job.id)
            return
        if entry is not None:
            self._entries[job.id] = entry

    def _buttons(self, job: Job, *, original: bool = False) -> InlineKeyboardMarkup | None:
        """The result's buttons; a session entry's also have its votes and Remix."""
        markup = result_buttons(job, self.catalog, original=original)
        entry = self._entries.get(job.id)
        return markup if entry is None else entry_buttons(markup, job, entry.votes)

    def _caption(self, job: Job, *, mention: bool = True) -> str:
        caption = html.escape(result_caption(job, self.catalog))
        entry = self._entries.get(job.id)
        if entry is not None:
            caption = f"🎨 {html.escape(entry_label(entry))}\n{caption}"
        who = mention_html(job.origin) if mention else ""
        return f"{caption}\n{who}" if who else caption

    async def send_failure(self, job: Job, steps: Steps) -> None:
        if "failure" in steps.sent:
            return
        text = html.escape(failure_text(job, self.catalog))
        mention = mention_html(job.origin)
        markup = result_buttons(job, self.catalog)
        try:
            message = await self._attempt(
                lambda: reply(
                    self.bot,
                    job.origin,
                    f"{text}\n{mention}" if mention else text,
                    html_text=True,
                    markup=markup,
                )
            )
        except _Refused as exc:
            if exc.reason != UNSURE:
                raise NotPosted(f"Telegram refused the failure message: {exc}") from None
            log.info("job %s: failure message may have been posted (%s)", job.id, exc)
            steps.sent["failure"] = 0
            return
        steps.sent["failure"] = message.message_id

    async def send_results(
        self, job: Job, files: Sequence[ResultFile], steps: Steps, *, mention: bool = True
    ) -> None:
        await self._find_entry(job)
        try:
            for index, f in enumerate(files):
                first = index == 0
                await self._send_one(
                    job,
                    f,
                    index,
                    steps,
                    caption=self._caption(job, mention=mention) if first else None,
                    first=first,
                )
        finally:
            self._entries.pop(job.id, None)

    def _ways(self, job: Job, f: ResultFile) -> list[str]:
        """How a file can go up, best first; a link (LINK) is the last way of all."""
        size = _size(f)
        if f.path is None or size is None or size > self.upload_limit:
            return []
        if _is_video(f, job):
            return [VIDEO, DOCUMENT]
        if _is_image(f, job) and size <= PHOTO_MAX_BYTES:
            return [PHOTO, DOCUMENT]
        return [DOCUMENT]

    async def _send_one(
        self,
        job: Job,
        f: ResultFile,
        index: int,
        steps: Steps,
        *,
        caption: str | None,
        first: bool,
    ) -> None:
        """One file, the first way Telegram takes: photo (or video), document, then a link.
        A way Telegram refused, or that may have arrived (no answer twice), is not tried
        again in a later attempt; after one that may have arrived, no upload is."""
        if any(f"{way}:{index}" in steps.sent for way in (*UPLOADS, LINK)):
            return
        data: bytes | None = None
        for way in self._ways(job, f):
            key = f"{way}:{index}"
            if steps.blocked(index):
                break
            if key in steps.skipped:
                continue
            if data is None:
                assert f.path is not None
                data = await asyncio.to_thread(f.path.read_bytes)
            send = self._upload(job, f, way, data, caption, first)
            try:
                message = await self._attempt(send)
            except _Refused as exc:
                steps.skipped[key] = exc.reason
                log.info("job %s: file %d not sent as a %s (%s)", job.id, index, way, exc)
                continue
            steps.sent[key] = message.message_id
            return
        await self._send_link(job, f, index, steps, caption, first)

    def _upload(
        self,
        job: Job,
        f: ResultFile,
        way: str,
        data: bytes,
        caption: str | None,
        first: bool,
    ) -> Callable[[], Awaitable[Message]]:
        markup = self._buttons(job, original=way == PHOTO) if first else None
        media: dict[str, Any] = {
            "caption": caption,
            "parse_mode": ParseMode.HTML,
            "reply_markup": markup,
            "filename": f.filename,
            **target(job.origin),
        }
        if way == PHOTO:
            return lambda: self.bot.send_photo(photo=data, **media)
        if way == VIDEO:
            return lambda: self.bot.send_video(video=data, supports_streaming=True, **media)
        return lambda: self.bot.send_document(
            document=data, disable_content_type_detection=True, **media
        )

    async def _send_link(
        self,
        job: Job,
        f: ResultFile,
        index: int,
        steps: Steps,
        caption: str | None,
        first: bool,
    ) -> None:
        """The file's URL in a text message: the way when no upload would do or worked."""
        tried = [steps.skipped[k] for k in steps.skipped if k.endswith(f":{index}")]
        if not tried:
            note = link_note(job.kind, _size(f), self.upload_limit_mb)
        else:
            note = fallback_note(job.kind, unsure=UNSURE in tried)
        note = f"{html.escape(note, quote=False)}\n{html.escape(f.url)}"
        text = f"{caption}\n\n{note}" if caption else note
        markup = self._buttons(job) if first else None
        try:
            message = await self._attempt(
                lambda: reply(self.bot, job.origin, text, html_text=True, markup=markup)
            )
        except _Refused as exc:
            if exc.reason == UNSURE:  # it may be there: sending it a third time could double it
                raise NotPosted(f"Telegram did not answer, twice: {exc}") from None
            raise NotPosted(f"Telegram refused every way to post it: {exc}") from None
        steps.sent[f"{LINK}:{index}"] = message.message_id

    @staticmethod
    async def _attempt(send: Callable[[], Awaitable[Message]]) -> Message:
        """`send()`, once more at once after a 5xx or no answer (a timeout: the message may
        have arrived, so never a third time). Raises `_Refused` when Telegram would not take
        it this way (the next way may work). Anything else (flood control, a blocked bot,
        a migrated chat, no connection: nothing was sent) goes to the caller."""
        tries = 0
        while True:
            try:
                return await send()
            except BadRequest as exc:  # IMAGE_PROCESS_FAILED, PHOTO_INVALID_DIMENSIONS, ...
                raise _Refused(REFUSED, exc.message) from None
            except (TimedOut, Unanswered) as exc:
                reason, why = UNSURE, f"no answer ({type(exc).__name__})"
            except ServerRefused as exc:  # Telegram answered: a 5xx, 413
                if exc.status == TOO_LARGE_STATUS:
                    raise _Refused(TOO_LARGE, exc.message) from None
                reason, why = REFUSED, f"{exc.message} ({exc.status})"
            tries += 1
            if tries > SEND_RETRIES:
                raise _Refused(reason, why)
            log.info("telegram: %s; trying once more", why)
