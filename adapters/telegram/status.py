"""A job's own status line on Telegram: a reply to the asker's message, edited as the job
moves, deleted once its result is out. Status traffic is cosmetic: it spends only what
the chat's budget leaves after results and replies (see `adapters.telegram.flood`).

- A status request first waits for its token (`FloodControl.turn`), then renders the
  job's newest state (the update in hand, a newer one that came meanwhile, or the stored
  row): an update made moot while it waited is never sent, a place in line never shows
  once the job left the line, and nothing is sent for a job that has ended. When the
  job's delivery starts, a status of it still waiting gives up (`FloodControl.call_off`),
  and the status line's delete waits in the background when the budget is short.
- A job's own line costs about `STATUS_BUDGET` requests (its reply, edits, its delete):
  every change of state or of place in line is shown; percentages are spread over what
  the budget leaves.

Also here, for the status board (`adapters.telegram.board`) too: how far a job got
(`stage`), what a message shows (`screen_key`) and the status turn (`status_turn`)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError

from adapters.telegram.flood import CalledOff, FloodControl
from adapters.telegram.lanes import status_traffic
from adapters.telegram.parse import PLATFORM
from adapters.telegram.results import reply
from adapters.telegram.texts import NOT_POSTED, NOT_POSTED_FAILURE, cancel_button, confirm_buttons
from bot.catalog import Catalog
from bot.messages import confirm_text, progress_text
from bot.models import Job, JobState, Kind

__all__ = [
    "StatusBook",
    "StatusLines",
    "flood_of",
    "not_modified",
    "screen_key",
    "stage",
    "status_turn",
]

log = logging.getLogger(__name__)

DONE_MEMORY = 10_000  # delivered job ids remembered, so a late progress update stays quiet
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

# Telegram answered and refused: the message surely does not exist. Anything else (a
# timeout, an answer we could not read) may have posted it.
_NOT_SENT = (BadRequest, Forbidden, RetryAfter, ChatMigrated)


def stage(job: Job) -> tuple[int, int]:
    return _STAGE.get(job.state, len(_STAGE)), job.progress if job.state is JobState.RUNNING else 0


def screen_key(text: str, markup: InlineKeyboardMarkup | None) -> str:
    """What a message shows, its text and buttons, as one comparable value."""
    buttons = [b.callback_data for row in markup.inline_keyboard for b in row] if markup else []
    return f"{text}\x00{buttons}"


def not_modified(exc: BadRequest) -> bool:
    return "not modified" in exc.message.lower()


def flood_of(bot: Bot) -> FloodControl | None:
    limiter = getattr(bot, "rate_limiter", None)
    return limiter if isinstance(limiter, FloodControl) else None


@asynccontextmanager
async def status_turn(
    bot: Bot, chat_id: int, job_id: str | None = None, *, new: bool = False
) -> AsyncIterator[None]:
    """Inside: a status request in this chat may go now (its token is taken). Raises
    CalledOff when the job's delivery starts first."""
    flood = flood_of(bot)
    with status_traffic():
        if flood is None:
            yield
            return
        async with flood.turn(chat_id, job_id, new=new):
            yield


class StatusBook(Protocol):
    """Where a job's status message is recorded (the core's Service): claimed before it is
    sent, its id stored the moment Telegram returns it."""

    async def claim_status(self, job_id: str) -> bool: ...

    async def release_status(self, job_id: str) -> None: ...

    async def attach_status_message(self, job_id: str, message_id: str) -> None: ...

    async def owe_status_drop(self, job_id: str) -> None: ...

    async def status_dropped(self, job_id: str) -> None: ...

    async def owed_status_drops(self, platform: str) -> list[Job]: ...


class StatusLines:
    """The jobs' own status lines, and what this process remembers of each job's status:
    its message, what it shows, the newest update seen, and which jobs were delivered."""

    def __init__(
        self,
        bot: Bot,
        catalog: Catalog,
        *,
        confirm_timeout_s: float,
        statuses: StatusBook | None,
        fresh: Callable[[str], Awaitable[Job | None]] | None,
    ) -> None:
        self.bot = bot
        self.catalog = catalog
        self.confirm_timeout_s = confirm_timeout_s
        self.statuses = statuses
        # Reads a job as stored now: what a status shows is checked against it when its
        # turn comes (a place in line computed before the job was sent is not shown).
        self.fresh = fresh
        self._locks: dict[str, asyncio.Lock] = {}
        self._status: dict[str, int] = {}
        self._shown: dict[str, str] = {}  # what the status message shows: text and buttons
        self._done: OrderedDict[str, None] = OrderedDict()
        self._latest: dict[str, Job] = {}  # the newest update seen of each running job
        self._stage_shown: dict[str, tuple[int, int]] = {}  # how far its own line is
        self._spent: dict[str, int] = {}  # requests its own line cost so far
        self._seen_at: dict[str, float] = {}  # loop time its newest update was seen
        self._cleanups: set[asyncio.Task[None]] = set()

    def lock(self, job_id: str) -> asyncio.Lock:
        """Held while a job's status message is created, edited or removed."""
        return self._locks.setdefault(job_id, asyncio.Lock())

    def delivered(self, job_id: str) -> bool:
        """The job's outcome went out from this process (or never will)."""
        return job_id in self._done

    def view(self, job: Job) -> tuple[str, InlineKeyboardMarkup | None]:
        """What a job's status message says, and its buttons: Confirm / Cancel while a video
        waits for its asker, Cancel while a job waits its turn in the chat."""
        if job.state is JobState.RECEIVED and job.hold == "confirm":
            return confirm_text(job, self.catalog, self.confirm_timeout_s), confirm_buttons(job)
        text = progress_text(job, self.catalog)
        if job.state is JobState.RECEIVED and job.queue_position:
            return text, cancel_button(job)
        return text, None

    def status_id(self, job: Job) -> int | None:
        # The store can lag behind this process (a whole-row save of an older copy).
        if job.id in self._status:
            return self._status[job.id]
        return int(job.status_message_id) if job.status_message_id else None

    def adopt(self, job: Job, message_id: int) -> None:
        """`message_id` (the Confirm prompt) becomes the job's status message."""
        if self._status.get(job.id) != message_id:
            self._status[job.id] = message_id
            self._shown.pop(job.id, None)
            self._stage_shown.pop(job.id, None)

    def note(self, job: Job) -> None:
        latest = self._latest.get(job.id)
        if latest is None or stage(job) >= stage(latest):
            self._latest[job.id] = job
            self._seen_at[job.id] = asyncio.get_running_loop().time()

    def _too_old(self, job: Job) -> bool:
        """A new percentage (nothing else changed) seen too long ago to be shown now."""
        shown = self._stage_shown.get(job.id)
        if shown is None or job.state is not JobState.RUNNING or stage(job)[0] != shown[0]:
            return False
        seen = self._seen_at.get(job.id)
        return seen is not None and asyncio.get_running_loop().time() - seen > PROGRESS_FRESH_S

    async def newest(self, job: Job) -> Job | None:
        """What the job's status should show now: the newest of the update in hand, any
        that came since, and the stored row; None once the job has ended."""
        if job.id in self._done:
            return None
        best = job
        latest = self._latest.get(job.id)
        if latest is not None and stage(latest) >= stage(best):
            best = latest
        if self.fresh is not None:
            stored = await self.fresh(job.id)
            if stored is None or stored.terminal:
                return None  # its delivery says how it ended
            if stored.state is not JobState.RECEIVED and stage(stored) > stage(best):
                best = stored  # it left the line (or moved on) meanwhile
        return None if job.id in self._done else best

    def _worth_an_edit(self, job: Job) -> bool:
        """A change of state or of place in line is always shown; a new percentage only
        when the job's status budget allows, spread over the rest of the way."""
        shown = self._stage_shown.get(job.id)
        reached = stage(job)
        if shown is None or reached[0] != shown[0] or job.state is not JobState.RUNNING:
            return True
        if reached[1] >= LAST_PERCENT_SHOWN:
            return False  # the result is near: an edit now would mostly land after it
        left = STATUS_BUDGET.get(job.kind, 4) - self._spent.get(job.id, 0) - 1  # the delete
        return left > 0 and reached[1] >= shown[1] + (100 - shown[1]) / (left + 1)

    async def show(self, job: Job, message_id: int | None) -> int | None:
        """Bring the job's own status line up to date, replying with one if it has none
        yet; returns its id. The caller holds `lock(job.id)`."""
        text, markup = self.view(job)
        if message_id is not None and (
            self._shown.get(job.id) == screen_key(text, markup) or not self._worth_an_edit(job)
        ):
            return message_id
        if job.hold is not None and message_id is None:  # a Confirm prompt: a reply, not status
            return await self._post(job, text, markup, screen_key(text, markup))
        try:
            return await self._show_own(job, message_id)
        except CalledOff:
            log.info("job %s: status update called off: its result goes now", job.id)
            return message_id

    async def _show_own(self, job: Job, message_id: int | None) -> int | None:
        """Show the job's own status line when its turn comes, as the job is then."""
        async with status_turn(self.bot, int(job.origin.chat_id), job.id, new=message_id is None):
            newest = await self.newest(job)
            if newest is None:
                return message_id
            job = newest
            text, markup = self.view(job)
            key = screen_key(text, markup)
            if message_id is None:
                posted = await self._post(job, text, markup, key)
                if posted is not None:
                    self._stage_shown[job.id] = stage(job)
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
                if not not_modified(exc):
                    log.info("job %s: status message not edited (%s)", job.id, exc.message)
                    return message_id
            self._shown[job.id] = key
            self._stage_shown[job.id] = stage(job)
        return message_id

    async def _post(
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
            message = await reply(self.bot, job.origin, text, markup=markup)
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

    async def drop(self, job: Job) -> None:
        """Delete the status message; a cleanup step, so a failure is only logged. The
        delete is status traffic: when the chat's budget has no room for it now, it waits
        in the background, not in the delivery."""
        message_id = self.status_id(job)
        if message_id is None:
            return
        flood, chat = flood_of(self.bot), int(job.origin.chat_id)
        if flood is not None and not flood.status_ready(chat):
            if self.statuses is not None:  # owed in the store before the delivery is
                try:
                    await self.statuses.owe_status_drop(job.id)
                except Exception:  # the store is away: deleted here all the same
                    log.warning("job %s: status delete not recorded as owed", job.id)
            self._later(self._delete(job.id, chat, message_id, owed=True))
            return
        await self._delete(job.id, chat, message_id)

    def _later(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(step)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def resume_drops(self) -> None:
        """Delete the status messages a process before this one owed (its result went out
        but it was killed before the delete): in the background, as status traffic."""
        if self.statuses is not None:
            self._later(self._drop_owed(self.statuses))

    async def _drop_owed(self, statuses: StatusBook) -> None:
        try:
            owed = await statuses.owed_status_drops(PLATFORM)
        except Exception:
            log.warning("owed status deletes not read", exc_info=True)
            return
        for job in owed:
            if job.status_message_id is not None:
                chat, message_id = int(job.origin.chat_id), int(job.status_message_id)
                await self._delete(job.id, chat, message_id, owed=True)

    async def _delete(self, job_id: str, chat: int, message_id: int, *, owed: bool = False) -> None:
        try:
            with status_traffic():
                await self.bot.delete_message(chat_id=chat, message_id=message_id)
        except TelegramError as exc:
            log.info("job %s: status message %s not deleted (%s)", job_id, message_id, exc)
        if owed and self.statuses is not None:
            try:
                await self.statuses.status_dropped(job_id)
            except Exception:
                log.warning("job %s: status delete not recorded as done", job_id)

    async def say(self, job: Job, text: str) -> None:
        """Show `text` in the job's status message, if it has one (best effort)."""
        message_id = self.status_id(job)
        key = screen_key(text, None)
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

    async def undeliverable(self, job: Job) -> None:
        """The status message says the outcome could not be posted and where to get it (a
        reply when there is none; best effort: the chat may be gone)."""
        text = NOT_POSTED if job.state is JobState.SUCCEEDED else NOT_POSTED_FAILURE
        message_id = self.status_id(job)
        try:
            if message_id is None:
                await reply(self.bot, job.origin, text)
            else:
                await self.bot.edit_message_text(
                    text, chat_id=int(job.origin.chat_id), message_id=message_id
                )
        except TelegramError as exc:
            log.info("job %s: not told it is undeliverable (%s)", job.id, exc)

    def forget(self, job_id: str) -> None:
        for store in (
            self._locks,
            self._status,
            self._shown,
            self._latest,
            self._stage_shown,
            self._spent,
            self._seen_at,
        ):
            store.pop(job_id, None)

    def finish(self, job_id: str) -> None:
        """The job's outcome went out (or never will): a late update of it stays quiet."""
        self.forget(job_id)
        self._done[job_id] = None
        while len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    async def aclose(self) -> None:
        """Call off status deletes still waiting: they are cosmetic."""
        tasks = list(self._cleanups)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
