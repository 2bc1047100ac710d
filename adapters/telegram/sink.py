"""Telegram as a delivery sink: status messages edited as a job moves, results uploaded from
our own copies, failures as replies. Everything it needs is in the stored job (origin and
status message), so a delivery after a restart lands in the right chat, topic and reply.

One result, one message: an image goes as a photo whose keyboard has 📎 Original, which
sends the uncompressed file on demand (`send_original`). When Telegram refuses an upload
(IMAGE_PROCESS_FAILED, PHOTO_INVALID_DIMENSIONS, another 400, a 5xx twice, 413) the next
way is tried: photo (or video), document, then a link in a text message. A 5xx or a
request without an answer (a timeout) is tried once more at once, never a third time:
after a timeout the message may have arrived, so a second one moves on to the link, never
to another upload. When every way failed, the job is undeliverable and its status
message says so (`undeliverable`)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dtm
import functools
import html
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import FileSizeLimit, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from adapters.telegram.parse import PLATFORM
from adapters.telegram.texts import (
    NOT_POSTED,
    NOT_POSTED_FAILURE,
    ORIGINAL_NOTE,
    cancel_button,
    confirm_buttons,
    delivery_retry_text,
    fallback_note,
    link_note,
    mention_html,
    result_buttons,
)
from adapters.telegram.transport import ServerRefused, Unanswered
from bot.catalog import Catalog
from bot.errors import DeliveryError, PermanentDeliveryError
from bot.messages import confirm_text, failure_text, progress_text, result_caption
from bot.models import Job, JobState, Kind, Origin
from bot.ports import ResultFile

__all__ = ["StatusBook", "TelegramSink", "delivery_error"]

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # Telegram's limit for a message
PHOTO_MAX_BYTES = FileSizeLimit.PHOTOSIZE_UPLOAD  # larger images go as documents only
DONE_MEMORY = 10_000  # delivered job ids remembered, so a late progress update stays quiet
TOO_LARGE_STATUS = 413
SEND_RETRIES = 1  # after a 5xx or no answer; a timed-out send may have arrived: never twice

# The ways a result file goes to a chat, in the order they are tried.
PHOTO, VIDEO, DOCUMENT, LINK = "photo", "video", "document", "link"
UPLOADS = (PHOTO, VIDEO, DOCUMENT)
# Why a way is not tried again: Telegram refused it; the file is too large for any upload
# (413); it may have arrived (no answer twice), so no other upload is tried either.
REFUSED, TOO_LARGE, UNSURE = "refused", "too large", "unsure"


class _Refused(Exception):
    """Telegram did not take a message this way (`reason`: REFUSED, TOO_LARGE, UNSURE)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class _NotPosted(Exception):
    """Every way of posting it failed: retrying cannot help."""


@dataclass(slots=True)
class _Steps:
    """What a delivery did so far (kept between its attempts in this process): the
    messages that went out, by way and file ("photo:0"), and the ways not to try again."""

    sent: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def blocked(self, index: int) -> bool:
        """No upload of file `index` is tried any more (too large, or one may be there)."""
        return any(self.skipped.get(f"{way}:{index}") in (TOO_LARGE, UNSURE) for way in UPLOADS)


class StatusBook(Protocol):
    """Where a job's status message is recorded (the core's Service): claimed before it is
    sent, its id stored the moment Telegram returns it."""

    async def claim_status(self, job_id: str) -> bool: ...

    async def release_status(self, job_id: str) -> None: ...

    async def attach_status_message(self, job_id: str, message_id: str) -> None: ...


# Telegram answered and refused: the message surely does not exist. Anything else (a
# timeout, an answer we could not read) may have posted it.
_NOT_SENT = (BadRequest, Forbidden, RetryAfter, ChatMigrated)


def _seconds(period: dtm.timedelta | float) -> float:
    return period.total_seconds() if isinstance(period, dtm.timedelta) else float(period)


def delivery_error(exc: TelegramError) -> DeliveryError:
    """The one place a Telegram failure becomes our error: retry later, or never."""
    if isinstance(exc, RetryAfter):
        wait = _seconds(exc.retry_after)
        return DeliveryError(f"Telegram flood control ({wait:g} s)", retry_after=wait)
    if isinstance(exc, Forbidden):
        return PermanentDeliveryError(f"Telegram refused: {exc.message}")
    if isinstance(exc, ChatMigrated):
        return PermanentDeliveryError("the group became a supergroup with a new chat id")
    if isinstance(exc, BadRequest):  # chat not found, no rights, topic closed, bad file
        return PermanentDeliveryError(f"Telegram refused: {exc.message}")
    if isinstance(exc, NetworkError):  # TimedOut included
        return DeliveryError(f"Telegram unreachable: {type(exc).__name__}")
    return DeliveryError(f"Telegram error: {type(exc).__name__}")


def _not_modified(exc: BadRequest) -> bool:
    return "not modified" in exc.message.lower()


def _is_image(f: ResultFile, job: Job) -> bool:
    return f.mime.startswith("image/") or (not f.mime and job.kind is Kind.IMAGE)


def _is_video(f: ResultFile, job: Job) -> bool:
    return f.mime.startswith("video/") or (not f.mime and job.kind is Kind.VIDEO)


class TelegramSink:
    """`DeliverySink` for origin platform "telegram".

    Per job it remembers (in this process) the status message, what it last showed,
    and which parts of a delivery already went out, so that a delivery retried after a
    partial success (flood control on the second upload) never sends a part twice.
    """

    platform = PLATFORM

    def __init__(
        self,
        bot: Bot,
        catalog: Catalog,
        *,
        upload_limit_mb: int,
        confirm_timeout_s: float = 300.0,
        statuses: StatusBook | None = None,
    ) -> None:
        self.bot = bot
        self.statuses = statuses
        self.catalog = catalog
        self.upload_limit_mb = upload_limit_mb
        self.upload_limit = upload_limit_mb * 1_000_000
        self.confirm_timeout_s = confirm_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._status: dict[str, int] = {}
        self._shown: dict[str, str] = {}  # what the status message shows: text and buttons
        self._sent: dict[str, _Steps] = {}
        self._done: OrderedDict[str, None] = OrderedDict()

    # -- sending ---------------------------------------------------------------------------

    @staticmethod
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
        self,
        origin: Origin,
        text: str,
        *,
        html_text: bool = False,
        markup: InlineKeyboardMarkup | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """A text reply to the origin's message (plain text unless `html_text`)."""
        return await self.bot.send_message(
            text=text[:MAX_TEXT],
            parse_mode=ParseMode.HTML if html_text else None,
            reply_markup=markup,
            **self.target(origin, reply_to),
        )

    # -- status messages -------------------------------------------------------------------

    def lock(self, job_id: str) -> asyncio.Lock:
        """Held while a job's status message is created, edited or removed."""
        return self._locks.setdefault(job_id, asyncio.Lock())

    def view(self, job: Job) -> tuple[str, InlineKeyboardMarkup | None]:
        """What a job's status message says, and its buttons: Confirm / Cancel while a video
        waits for its asker, Cancel while a job waits its turn in the chat."""
        if job.state is JobState.RECEIVED and job.hold == "confirm":
            return confirm_text(job, self.catalog, self.confirm_timeout_s), confirm_buttons(job)
        text = progress_text(job, self.catalog)
        if job.state is JobState.RECEIVED and job.queue_position:
            return text, cancel_button(job)
        return text, None

    @staticmethod
    def _key(text: str, markup: InlineKeyboardMarkup | None) -> str:
        buttons = [b.callback_data for row in markup.inline_keyboard for b in row] if markup else []
        return f"{text}\x00{buttons}"

    def status_id(self, job: Job) -> int | None:
        # The store can lag behind this process (a whole-row save of an older copy).
        if job.id in self._status:
            return self._status[job.id]
        return int(job.status_message_id) if job.status_message_id else None

    async def show_status(self, job: Job, *, adopt: int | None = None) -> int | None:
        """Bring the job's status message up to date, replying with one if it has none yet;
        `adopt` makes an existing message (the Confirm prompt) the status message. Returns its
        id, or None once the job was delivered. The caller holds `lock(job.id)`."""
        if job.id in self._done:
            return None
        if adopt is not None and self._status.get(job.id) != adopt:
            self._status[job.id] = adopt
            self._shown.pop(job.id, None)
        text, markup = self.view(job)
        key = self._key(text, markup)
        message_id = self.status_id(job)
        if message_id is None:
            return await self._post_status(job, text, markup, key)
        if self._shown.get(job.id) != key:
            try:
                await self.bot.edit_message_text(
                    text,
                    chat_id=int(job.origin.chat_id),
                    message_id=message_id,
                    reply_markup=markup,
                )
            except BadRequest as exc:
                if not _not_modified(exc):
                    log.info("job %s: status message not edited (%s)", job.id, exc.message)
                    return message_id
            self._shown[job.id] = key
        return message_id

    async def _post_status(
        self, job: Job, text: str, markup: InlineKeyboardMarkup | None, key: str
    ) -> int | None:
        """Reply with the job's first status message: claimed in the store before it is
        sent and its id stored at once, so a crash leaves at most this one message, which
        no later process repeats. None when one exists or was being sent already."""
        book = self.statuses
        if book is not None and not await book.claim_status(job.id):
            log.info("job %s: its status message was sent already (or may have been)", job.id)
            return None
        try:
            message = await self.reply(job.origin, text, markup=markup)
        except _NOT_SENT:
            if book is not None:
                await book.release_status(job.id)
            raise
        self._status[job.id] = message.message_id
        self._shown[job.id] = key
        if book is not None:
            try:
                await book.attach_status_message(job.id, str(message.message_id))
            except Exception:  # shown, and claimed: never posted twice; edits use _status
                log.exception("job %s: status message id not stored", job.id)
        log.info(
            "job %s: status message %s in telegram chat %s",
            job.id,
            message.message_id,
            job.origin.chat_id,
        )
        return message.message_id

    async def progress(self, job: Job) -> str | None:
        if job.terminal or job.id in self._done:
            return None  # deliver() takes over the status message
        async with self.lock(job.id):
            # Replies with a new status line when there is none (after a restart, or when the
            # first reply was lost); the notifier then stores its id.
            message_id = await self.show_status(job)
            if message_id is None or self.statuses is not None:  # stored already
                return None
            return str(message_id) if str(message_id) != job.status_message_id else None

    async def _drop_status(self, job: Job) -> None:
        """Delete the status message; a cleanup step, so a failure is only logged."""
        message_id = self.status_id(job)
        if message_id is None:
            return
        try:
            await self.bot.delete_message(chat_id=int(job.origin.chat_id), message_id=message_id)
        except TelegramError as exc:
            log.info("job %s: status message %s not deleted (%s)", job.id, message_id, exc)

    # -- delivery --------------------------------------------------------------------------

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        if job.id in self._done:
            return  # already delivered by this process (the outcome was not recorded)
        try:
            async with self.lock(job.id):
                steps = self._sent.setdefault(job.id, _Steps())
                if job.state is JobState.SUCCEEDED:
                    await self._send_results(job, files, steps)
                else:
                    await self._send_failure(job, steps)
                await self._drop_status(job)
        except _NotPosted as exc:
            self._forget(job.id)
            raise PermanentDeliveryError(str(exc)) from None
        except TelegramError as exc:
            error = delivery_error(exc)
            if isinstance(error, PermanentDeliveryError):
                self._forget(job.id)
            raise error from None
        log.info(
            "job %s: sent to telegram chat %s (%s)",
            job.id,
            job.origin.chat_id,
            ", ".join(f"{step}={mid}" for step, mid in steps.sent.items()),
        )
        self._forget(job.id)
        self._done[job.id] = None
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    async def undeliverable(self, job: Job) -> None:
        """The core gave up on posting the job's outcome: its status message says so and
        where to get the result (best effort: the chat may be gone)."""
        async with self.lock(job.id):
            text = NOT_POSTED if job.state is JobState.SUCCEEDED else NOT_POSTED_FAILURE
            message_id = self.status_id(job)
            try:
                if message_id is None:
                    await self.reply(job.origin, text)
                else:
                    await self.bot.edit_message_text(
                        text, chat_id=int(job.origin.chat_id), message_id=message_id
                    )
            except TelegramError as exc:
                log.info("job %s: not told it is undeliverable (%s)", job.id, exc)
            self._forget(job.id)
            self._done[job.id] = None

    async def delivery_delayed(self, job: Job) -> None:
        """The result waits to be posted again: the status message says so, not "waiting"."""
        if job.id in self._done:
            return
        async with self.lock(job.id):
            await self._say_in_status(job, delivery_retry_text(job))

    async def _say_in_status(self, job: Job, text: str) -> None:
        """Show `text` in the job's status message, if it has one (best effort)."""
        message_id = self.status_id(job)
        key = self._key(text, None)
        if message_id is None or self._shown.get(job.id) == key:
            return
        try:
            await self.bot.edit_message_text(
                text, chat_id=int(job.origin.chat_id), message_id=message_id
            )
        except TelegramError as exc:
            log.info("job %s: status message not edited (%s)", job.id, exc)
            return
        self._shown[job.id] = key

    def _forget(self, job_id: str) -> None:
        for store in (self._locks, self._status, self._shown, self._sent):
            store.pop(job_id, None)

    async def send_again(self, job: Job, files: Sequence[ResultFile], origin: Origin) -> None:
        """A stored result once more (/history), as a reply to `origin`'s message: the same
        caption and buttons as its first delivery, without pinging its asker again."""
        again = dataclasses.replace(job, origin=origin)
        try:
            await self._send_results(again, files, _Steps(), mention=False)
        except _NotPosted as exc:
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
            target = self.target(origin, reply_to=reply_to)
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
                        **target,
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
            await self.reply(origin, f"{note}\n{f.url}", reply_to=reply_to)

    def _caption(self, job: Job, *, mention: bool = True) -> str:
        caption = html.escape(result_caption(job, self.catalog))
        who = mention_html(job.origin) if mention else ""
        return f"{caption}\n{who}" if who else caption

    async def _send_failure(self, job: Job, steps: _Steps) -> None:
        if "failure" in steps.sent:
            return
        text = html.escape(failure_text(job, self.catalog))
        mention = mention_html(job.origin)
        markup = result_buttons(job, self.catalog)
        try:
            message = await self._attempt(
                lambda: self.reply(
                    job.origin,
                    f"{text}\n{mention}" if mention else text,
                    html_text=True,
                    markup=markup,
                )
            )
        except _Refused as exc:
            if exc.reason != UNSURE:
                raise _NotPosted(f"Telegram refused the failure message: {exc}") from None
            log.info("job %s: failure message may have been posted (%s)", job.id, exc)
            steps.sent["failure"] = 0
            return
        steps.sent["failure"] = message.message_id

    async def _send_results(
        self, job: Job, files: Sequence[ResultFile], steps: _Steps, *, mention: bool = True
    ) -> None:
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
        steps: _Steps,
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
        markup = result_buttons(job, self.catalog, original=way == PHOTO) if first else None
        media: dict[str, Any] = {
            "caption": caption,
            "parse_mode": ParseMode.HTML,
            "reply_markup": markup,
            "filename": f.filename,
            **self.target(job.origin),
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
        steps: _Steps,
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
        markup = result_buttons(job, self.catalog) if first else None
        try:
            message = await self._attempt(
                lambda: self.reply(job.origin, text, html_text=True, markup=markup)
            )
        except _Refused as exc:
            if exc.reason == UNSURE:  # it may be there: sending it a third time could double it
                raise _NotPosted(f"Telegram did not answer, twice: {exc}") from None
            raise _NotPosted(f"Telegram refused every way to post it: {exc}") from None
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


def _size(f: ResultFile) -> int | None:
    return f.size if f.size is not None else (f.path.stat().st_size if f.path else None)
