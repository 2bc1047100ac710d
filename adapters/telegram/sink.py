"""Telegram as a delivery sink: status messages edited as a job moves, results uploaded from
our own copies, failures as replies. Everything it needs is in the stored job (origin and
status message), so a delivery after a restart lands in the right chat, topic and reply.

`TelegramSink` is the one the core and the handlers use; it composes
- `StatusLines` (status.py): a job's own status line, a reply edited as it moves;
- `StatusBoards` (board.py): in a busy group, one board message for the jobs that came
  late, instead of a line each;
- `ResultPoster` (results.py): the result, the first way Telegram takes (photo or video,
  document, link), or the failure.

Status traffic is cosmetic and planned around the results (see `adapters.telegram.flood`):
every running job of a chat keeps one token of the chat's budget for its result
(`FloodControl.expect_results`); status lines, their edits and deletes, and boards spend
only what is left, and go after results and replies. When a job's delivery starts, a
status of it still waiting for its turn gives up; when every way of posting the outcome
failed, the job is undeliverable and its status message says so (`undeliverable`)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from adapters.telegram.board import BOARD_AFTER, BOARD_INTERVAL_S, StatusBoards
from adapters.telegram.lanes import chat_key
from adapters.telegram.parse import PLATFORM
from adapters.telegram.results import NotPosted, ResultPoster, Steps, reply, target
from adapters.telegram.status import StatusBook, StatusLines, flood_of
from adapters.telegram.texts import delivery_retry_text
from bot.catalog import Catalog
from bot.errors import DeliveryError, PermanentDeliveryError
from bot.models import Job, JobState, Origin
from bot.ports import ResultFile
from bot.sessions import Entry

__all__ = ["StatusBook", "TelegramSink", "delivery_error"]

log = logging.getLogger(__name__)


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
        entries: Callable[[str], Awaitable[Entry | None]] | None = None,
        board_after: int = BOARD_AFTER,
        board_interval_s: float = BOARD_INTERVAL_S,
    ) -> None:
        self.bot = bot
        self.catalog = catalog
        self.board_after = board_after
        self.lines = StatusLines(
            bot, catalog, confirm_timeout_s=confirm_timeout_s, statuses=statuses, fresh=fresh
        )
        self.boards = StatusBoards(
            bot, catalog, interval_s=board_interval_s, newest=self.lines.newest
        )
        self.results = ResultPoster(bot, catalog, upload_limit_mb=upload_limit_mb, entries=entries)
        self._sent: dict[str, Steps] = {}
        self._chat_of: dict[str, int] = {}  # running job -> its chat
        self._running: dict[int, set[str]] = {}  # chat -> its running jobs seen here

    # -- sending ---------------------------------------------------------------------------

    @staticmethod
    def target(origin: Origin, reply_to: int | None = None) -> dict[str, Any]:
        """chat, forum topic and reply parameters of every message about `origin`."""
        return target(origin, reply_to)

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
        return await reply(
            self.bot, origin, text, html_text=html_text, markup=markup, reply_to=reply_to
        )

    # -- status messages -------------------------------------------------------------------

    def lock(self, job_id: str) -> asyncio.Lock:
        """Held while a job's status message is created, edited or removed."""
        return self.lines.lock(job_id)

    def _track(self, job: Job) -> None:
        """The job runs in its chat: its result keeps a token of the chat's budget."""
        if job.terminal or self.lines.delivered(job.id) or job.id in self._chat_of:
            return
        chat = int(job.origin.chat_id)
        self._chat_of[job.id] = chat
        jobs = self._running.setdefault(chat, set())
        jobs.add(job.id)
        flood = flood_of(self.bot)
        if flood is not None:
            flood.expect_results(chat, len(jobs))

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
        flood = flood_of(self.bot)
        if flood is not None:
            flood.expect_results(chat, len(jobs))
        self.boards.remove(chat, job_id)

    def _goes_on_board(self, job: Job) -> bool:
        chat = int(job.origin.chat_id)
        if self.boards.has(chat, job.id):
            return True
        if job.hold is not None or not chat_key(chat)[1]:
            return False  # a Confirm prompt, or a private chat: its own message
        return len(self._running.get(chat, ())) > self.board_after

    async def show_status(self, job: Job, *, adopt: int | None = None) -> int | None:
        """Bring the job's status message up to date, replying with one if it has none yet
        (or putting the job on its chat's board: see `adapters.telegram.board`); `adopt`
        makes an existing message (the Confirm prompt) the status message. Returns its id,
        or None when the job is on a board or was delivered. The caller holds
        `lock(job.id)`."""
        lines = self.lines
        if lines.delivered(job.id):
            return None
        self._track(job)
        lines.note(job)
        if adopt is not None:
            lines.adopt(job, adopt)
        message_id = lines.status_id(job)
        if message_id is None and adopt is None and self._goes_on_board(job):
            self.boards.update(job)
            return None
        return await lines.show(job, message_id)

    async def progress(self, job: Job) -> str | None:
        if job.terminal or self.lines.delivered(job.id):
            return None  # deliver() takes over the status message
        async with self.lock(job.id):
            # Replies with a new status line when there is none (after a restart, or when the
            # first reply was lost); the notifier then stores its id.
            message_id = await self.show_status(job)
            if message_id is None or self.lines.statuses is not None:  # stored already
                return None
            return str(message_id) if str(message_id) != job.status_message_id else None

    async def aclose(self) -> None:
        """Call off status traffic still waiting (boards, deletes): it is cosmetic."""
        await self.boards.aclose()
        await self.lines.aclose()

    # -- delivery --------------------------------------------------------------------------

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        if self.lines.delivered(job.id):
            return  # already delivered by this process (the outcome was not recorded)
        flood = flood_of(self.bot)
        if flood is not None:  # results first: a status waiting for budget gives up
            flood.call_off(job.id)
        try:
            async with self.lock(job.id):
                steps = self._sent.setdefault(job.id, Steps())
                if job.state is JobState.SUCCEEDED:
                    await self.results.send_results(job, files, steps)
                else:
                    await self.results.send_failure(job, steps)
                self._untrack(job.id)  # the result went out: its token is free
                await self.lines.drop(job)
        except NotPosted as exc:
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
        self._finish(job.id)

    async def undeliverable(self, job: Job) -> None:
        """The core gave up on posting the job's outcome: its status message says so and
        where to get the result (best effort: the chat may be gone)."""
        async with self.lock(job.id):
            await self.lines.undeliverable(job)
            self._finish(job.id)

    async def delivery_delayed(self, job: Job) -> None:
        """The result waits to be posted again: the status message says so, not "waiting"."""
        if self.lines.delivered(job.id):
            return
        async with self.lock(job.id):
            await self.lines.say(job, delivery_retry_text(job))

    def _forget(self, job_id: str) -> None:
        self._untrack(job_id)
        self.lines.forget(job_id)
        self._sent.pop(job_id, None)

    def _finish(self, job_id: str) -> None:
        self._untrack(job_id)
        self._sent.pop(job_id, None)
        self.lines.finish(job_id)

    async def send_again(self, job: Job, files: Sequence[ResultFile], origin: Origin) -> None:
        """A stored result once more (/history), as a reply to `origin`'s message: the same
        caption and buttons as its first delivery, without pinging its asker again."""
        await self.results.send_again(job, files, origin)

    async def send_original(
        self, job: Job, files: Sequence[ResultFile], origin: Origin, reply_to: int
    ) -> None:
        """The uncompressed files of an image result (📎 Original pressed), as documents
        replying to the result message; a link where one is too large to upload or
        Telegram refuses it."""
        await self.results.send_original(job, files, origin, reply_to)
