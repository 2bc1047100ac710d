"""Telegram as a delivery sink: status messages edited as a job moves, results uploaded from
our own copies, failures as replies. Everything it needs is in the stored job (origin and
status message), so a delivery after a restart lands in the right chat, topic and reply.

Status traffic is cosmetic and planned around the results (see `adapters.telegram.flood`):

- Every running job of a chat keeps one token of the chat's budget for its result
  (`FloodControl.expect_results`); status lines, their edits and deletes, and boards
  spend only what is left, and go after results and replies.
- A status request first waits for its token (`FloodControl.turn`), then renders the
  job's newest state (the update in hand, a newer one that came meanwhile, or the stored
  row): an update made moot while it waited is never sent, a place in line never shows
  once the job left the line, and nothing is sent for a job that has ended. When the
  job's delivery starts, a status of it still waiting gives up (`FloodControl.call_off`),
  and the status line's delete waits in the background when the budget is short.
- A job's own line costs about `STATUS_BUDGET` requests (its reply, edits, its delete):
  every change of state or of place in line is shown; percentages are spread over what
  the budget leaves.
- The switch rule, a status board: in a group, a job that arrives while more than
  `BOARD_AFTER` jobs are active in the chat (running or in line, counting itself) gets
  no line of its own but a line on the chat's one board message, edited in place, with
  who asked, the model and where
  each job is, plus Cancel buttons for the ones still in line. A change of state or place
  shows at most `board_interval_s` after the board's last request, new percentages
  `BOARD_PROGRESS_FACTOR` times less often. The 👀 reaction acknowledges each request.
  Jobs that had a line keep it; a job's board line goes when it ends, and the board is
  deleted once it is empty.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
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

from adapters.telegram.flood import CalledOff, FloodControl
from adapters.telegram.lanes import chat_key, status_traffic
from adapters.telegram.parse import PLATFORM
from adapters.telegram.texts import (
    NOT_POSTED,
    NOT_POSTED_FAILURE,
    ORIGINAL_NOTE,
    board_buttons,
    board_text,
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
BOARD_AFTER = 2  # a group with more running jobs than this shows new ones on a board
BOARD_INTERVAL_S = 3.0  # a board shows a change of state at most this long after the last
BOARD_PROGRESS_FACTOR = 5  # and a new percentage only after five times that
# Requests a job's own status line may cost (its reply, edits and delete), by kind.
STATUS_BUDGET = {Kind.IMAGE: 4, Kind.VIDEO: 8}
# A percentage this high is not shown: the result follows within seconds, and an edit sent
# now would mostly reach the chat after the gateway finished (a stale status).
LAST_PERCENT_SHOWN = 75
# A percentage seen longer ago than this when its edit's turn comes is not sent: the job
# may have finished meanwhile, and the next poll brings a newer one.
PROGRESS_FRESH_S = 1.0

# How far a job got, for status texts: an older update is never shown over a newer one
# (a gateway may report queued again after running, so they rank alike).
_STAGE = {JobState.RECEIVED: 0, JobState.SUBMITTING: 1, JobState.QUEUED: 2, JobState.RUNNING: 2}


def _stage(job: Job) -> tuple[int, int]:
    return _STAGE.get(job.state, len(_STAGE)), job.progress if job.state is JobState.RUNNING else 0


@dataclass(slots=True)
class _Board:
    """A busy chat's status board: its message and the jobs on it, in arrival order."""

    jobs: dict[str, Job] = field(default_factory=dict)
    message_id: int | None = None
    shown: str | None = None
    at: float = float("-inf")  # loop time of its last request
    phases: tuple[tuple[str, int, int], ...] = ()  # the jobs shown, their states and places
    dirty: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def _phases(jobs: list[Job]) -> tuple[tuple[str, int, int], ...]:
    """A board's jobs, their states and places in line: all but the percentages."""
    return tuple((job.id, _stage(job)[0], job.queue_position or 0) for job in jobs)


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
        fresh: Callable[[str], Awaitable[Job | None]] | None = None,
        board_after: int = BOARD_AFTER,
        board_interval_s: float = BOARD_INTERVAL_S,
    ) -> None:
        self.bot = bot
        self.statuses = statuses
        # Reads a job as stored now: what a status shows is checked against it when its
        # turn comes (a place in line computed before the job was sent is not shown).
        self.fresh = fresh
        self.board_after = board_after
        self.board_interval_s = board_interval_s
        self.catalog = catalog
        self.upload_limit_mb = upload_limit_mb
        self.upload_limit = upload_limit_mb * 1_000_000
        self.confirm_timeout_s = confirm_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._status: dict[str, int] = {}
        self._shown: dict[str, str] = {}  # what the status message shows: text and buttons
        self._sent: dict[str, _Steps] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._latest: dict[str, Job] = {}  # the newest update seen of each running job
        self._stage_shown: dict[str, tuple[int, int]] = {}  # how far its own line is
        self._spent: dict[str, int] = {}  # requests its own line cost so far
        self._seen_at: dict[str, float] = {}  # loop time its newest update was seen
        self._chat_of: dict[str, int] = {}  # running job -> its chat
        self._running: dict[int, set[str]] = {}  # chat -> its running jobs seen here
        self._boards: dict[int, _Board] = {}
        self._cleanups: set[asyncio.Task[None]] = set()

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

    @property
    def flood(self) -> FloodControl | None:
        limiter = getattr(self.bot, "rate_limiter", None)
        return limiter if isinstance(limiter, FloodControl) else None

    @asynccontextmanager
    async def _turn(
        self, chat_id: int, job_id: str | None = None, *, new: bool = False
    ) -> AsyncIterator[None]:
        """Inside: a status request in this chat may go now (its token is taken). Raises
        CalledOff when the job's delivery starts first."""
        flood = self.flood
        with status_traffic():
            if flood is None:
                yield
                return
            async with flood.turn(chat_id, job_id, new=new):
                yield

    def _call_off_status(self, job_id: str) -> None:
        """The job's result goes now: a status of it waiting for its turn (holding the
        job's lock) gives up, so the result does not wait for it."""
        if self.flood is not None:
            self.flood.call_off(job_id)

    def _track(self, job: Job) -> None:
        """The job runs in its chat: its result keeps a token of the chat's budget."""
        if job.terminal or job.id in self._done or job.id in self._chat_of:
            return
        chat = int(job.origin.chat_id)
        self._chat_of[job.id] = chat
        jobs = self._running.setdefault(chat, set())
        jobs.add(job.id)
        if self.flood is not None:
            self.flood.expect_results(chat, len(jobs))

    def _untrack(self, job_id: str) -> None:
        """The job's result went out (or never will): its token is free, its board line
        goes."""
        chat = self._chat_of.pop(job_id, None)
        if chat is None:
            return
        jobs = self._running.get(chat, set())
        jobs.discard(job_id)
        if not jobs:
            self._running.pop(chat, None)
        if self.flood is not None:
            self.flood.expect_results(chat, len(jobs))
        board = self._boards.get(chat)
        if board is not None and board.jobs.pop(job_id, None) is not None:
            self._kick_board(chat)

    def _note(self, job: Job) -> None:
        latest = self._latest.get(job.id)
        if latest is None or _stage(job) >= _stage(latest):
            self._latest[job.id] = job
            self._seen_at[job.id] = asyncio.get_running_loop().time()

    def _too_old(self, job: Job) -> bool:
        """A new percentage (nothing else changed) seen too long ago to be shown now."""
        shown = self._stage_shown.get(job.id)
        if shown is None or job.state is not JobState.RUNNING or _stage(job)[0] != shown[0]:
            return False
        seen = self._seen_at.get(job.id)
        return seen is not None and asyncio.get_running_loop().time() - seen > PROGRESS_FRESH_S

    async def _newest(self, job: Job) -> Job | None:
        """What the job's status should show now: the newest of the update in hand, any
        that came since, and the stored row; None once the job has ended."""
        if job.id in self._done:
            return None
        best = job
        latest = self._latest.get(job.id)
        if latest is not None and _stage(latest) >= _stage(best):
            best = latest
        if self.fresh is not None:
            stored = await self.fresh(job.id)
            if stored is None or stored.terminal:
                return None  # its delivery says how it ended
            if stored.state is not JobState.RECEIVED and _stage(stored) > _stage(best):
                best = stored  # it left the line (or moved on) meanwhile
        return None if job.id in self._done else best

    def _worth_an_edit(self, job: Job) -> bool:
        """A change of state or of place in line is always shown; a new percentage only
        when the job's status budget allows, spread over the rest of the way."""
        shown = self._stage_shown.get(job.id)
        stage = _stage(job)
        if shown is None or stage[0] != shown[0] or job.state is not JobState.RUNNING:
            return True
        if stage[1] >= LAST_PERCENT_SHOWN:
            return False  # the result is near: an edit now would mostly land after it
        left = STATUS_BUDGET.get(job.kind, 4) - self._spent.get(job.id, 0) - 1  # the delete
        return left > 0 and stage[1] >= shown[1] + (100 - shown[1]) / (left + 1)

    def _goes_on_board(self, job: Job) -> bool:
        chat = int(job.origin.chat_id)
        board = self._boards.get(chat)
        if board is not None and job.id in board.jobs:
            return True
        if job.hold is not None or not chat_key(chat)[1]:
            return False  # a Confirm prompt, or a private chat: its own message
        return len(self._running.get(chat, ())) > self.board_after

    async def show_status(self, job: Job, *, adopt: int | None = None) -> int | None:
        """Bring the job's status message up to date, replying with one if it has none yet
        (or putting the job on its chat's board: see the module docstring); `adopt` makes
        an existing message (the Confirm prompt) the status message. Returns its id, or
        None when the job is on a board or was delivered. The caller holds
        `lock(job.id)`."""
        if job.id in self._done:
            return None
        self._track(job)
        self._note(job)
        if adopt is not None and self._status.get(job.id) != adopt:
            self._status[job.id] = adopt
            self._shown.pop(job.id, None)
            self._stage_shown.pop(job.id, None)
        message_id = self.status_id(job)
        if message_id is None and adopt is None and self._goes_on_board(job):
            self._board_update(job)
            return None
        text, markup = self.view(job)
        if message_id is not None and (
            self._shown.get(job.id) == self._key(text, markup) or not self._worth_an_edit(job)
        ):
            return message_id
        if job.hold is not None and message_id is None:  # a Confirm prompt: a reply, not status
            return await self._post_status(job, text, markup, self._key(text, markup))
        try:
            return await self._show_own(job, message_id)
        except CalledOff:
            log.info("job %s: status update called off: its result goes now", job.id)
            return message_id

    async def _show_own(self, job: Job, message_id: int | None) -> int | None:
        """Show the job's own status line when its turn comes, as the job is then."""
        async with self._turn(int(job.origin.chat_id), job.id, new=message_id is None):
            newest = await self._newest(job)
            if newest is None:
                return message_id
            job = newest
            text, markup = self.view(job)
            key = self._key(text, markup)
            if message_id is None:
                posted = await self._post_status(job, text, markup, key)
                if posted is not None:
                    self._stage_shown[job.id] = _stage(job)
                    self._spent[job.id] = 1
                return posted
            if self._shown.get(job.id) == key:
                return message_id
            if not self._worth_an_edit(job) or self._too_old(job):
                return message_id  # a newer percentage came while it waited: not worth it
            self._spent[job.id] = self._spent.get(job.id, 0) + 1
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
            self._stage_shown[job.id] = _stage(job)
        return message_id

    async def aclose(self) -> None:
        """Call off status traffic still waiting (boards, deletes): it is cosmetic."""
        tasks = [*self._cleanups, *(b.task for b in self._boards.values() if b.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- boards ----------------------------------------------------------------------------

    def _board_update(self, job: Job) -> None:
        chat = int(job.origin.chat_id)
        board = self._boards.setdefault(chat, _Board())
        on = board.jobs.get(job.id)
        if on is None or _stage(job) >= _stage(on):
            board.jobs[job.id] = job
        self._kick_board(chat)

    def _kick_board(self, chat: int) -> None:
        board = self._boards.get(chat)
        if board is None:
            return
        board.dirty = True
        board.wake.set()
        if board.task is None:
            board.task = asyncio.create_task(self._show_board(chat), name=f"board-{chat}")

    async def _board_view(self, board: _Board) -> list[Job]:
        """The board's jobs as they are now; ended ones leave it."""
        jobs = []
        for job_id, job in list(board.jobs.items()):
            newest = await self._newest(job)
            if newest is None:
                board.jobs.pop(job_id, None)
            elif job_id in board.jobs:
                board.jobs[job_id] = newest
                jobs.append(newest)
        return jobs

    async def _show_board(self, chat: int) -> None:
        """Bring the chat's board up to date until nothing changed meanwhile, rendered when
        its turn comes; deleted once empty. A job arriving, leaving or changing state is
        shown at most `board_interval_s` after the last board request, a new percentage
        only after `BOARD_PROGRESS_FACTOR` times that."""
        board = self._boards[chat]
        loop = asyncio.get_running_loop()
        try:
            while board.dirty:
                board.dirty = False
                jobs = await self._board_view(board)
                if not jobs and board.message_id is None:
                    break
                if jobs and self._board_key(jobs) == board.shown:
                    continue
                interval = self.board_interval_s
                if jobs and _phases(jobs) == board.phases:
                    interval *= BOARD_PROGRESS_FACTOR
                wait = board.at + interval - loop.time()
                if wait > 0:
                    board.wake.clear()
                    try:
                        async with asyncio.timeout(wait):
                            await board.wake.wait()
                        continue  # something changed meanwhile: look again
                    except TimeoutError:
                        pass
                async with self._turn(chat, new=board.message_id is None):
                    await self._board_request(chat, board, await self._board_view(board))
                board.at = loop.time()
        except Exception as exc:  # a board is cosmetic: the next change tries again
            log.info("telegram chat %s: status board not shown (%s)", chat, exc)
        finally:
            board.task = None
            if not board.jobs and board.message_id is None:
                self._boards.pop(chat, None)
            elif board.dirty:
                self._kick_board(chat)

    def _board_key(self, jobs: list[Job]) -> str:
        return self._key(board_text(jobs, self.catalog), board_buttons(jobs))

    async def _board_request(self, chat: int, board: _Board, jobs: list[Job]) -> None:
        if not jobs:
            message_id, board.message_id, board.shown = board.message_id, None, None
            if message_id is not None:
                try:
                    await self.bot.delete_message(chat_id=chat, message_id=message_id)
                except TelegramError as exc:
                    log.info("telegram chat %s: board %s not deleted (%s)", chat, message_id, exc)
            return
        text, markup = board_text(jobs, self.catalog), board_buttons(jobs)
        key = self._key(text, markup)
        board.phases = _phases(jobs)
        if board.message_id is None:
            first = jobs[0].origin
            kwargs: dict[str, Any] = {"chat_id": chat}
            if first.thread_id is not None:
                kwargs["message_thread_id"] = int(first.thread_id)
            message = await self.bot.send_message(
                text=text[:MAX_TEXT], reply_markup=markup, **kwargs
            )
            board.message_id = message.message_id
            log.info("telegram chat %s: status board %s", chat, message.message_id)
        elif key != board.shown:
            try:
                await self.bot.edit_message_text(
                    text[:MAX_TEXT], chat_id=chat, message_id=board.message_id, reply_markup=markup
                )
            except BadRequest as exc:
                if not _not_modified(exc):
                    raise
        board.shown = key

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
        """Delete the status message; a cleanup step, so a failure is only logged. The
        result went out: its token is free. The delete is status traffic: when the chat's
        budget has no room for it now, it waits in the background, not in the delivery."""
        self._untrack(job.id)
        message_id = self.status_id(job)
        if message_id is None:
            return
        flood, chat = self.flood, int(job.origin.chat_id)
        if flood is not None and not flood.status_ready(chat):
            task = asyncio.create_task(self._delete_status(job.id, chat, message_id))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
            return
        await self._delete_status(job.id, chat, message_id)

    async def _delete_status(self, job_id: str, chat: int, message_id: int) -> None:
        try:
            with status_traffic():
                await self.bot.delete_message(chat_id=chat, message_id=message_id)
        except TelegramError as exc:
            log.info("job %s: status message %s not deleted (%s)", job_id, message_id, exc)

    # -- delivery --------------------------------------------------------------------------

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        if job.id in self._done:
            return  # already delivered by this process (the outcome was not recorded)
        self._call_off_status(job.id)  # results first: a status waiting for budget gives up
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
        self._untrack(job_id)
        for store in (
            self._locks,
            self._status,
            self._shown,
            self._sent,
            self._latest,
            self._stage_shown,
            self._spent,
            self._seen_at,
        ):
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
