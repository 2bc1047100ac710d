"""A busy group's status board: one message, edited in place, with a line per job.

The switch rule: in a group, a job that arrives while more than `BOARD_AFTER` jobs are
active in the chat (running or in line, counting itself) gets no line of its own
(`adapters.telegram.status`) but a line on the chat's one board message, with who asked,
the model and where each job is, plus Cancel buttons for the ones still in line. A change
of state or place shows at most `board_interval_s` after the board's last request, new
percentages `BOARD_PROGRESS_FACTOR` times less often. The 👀 reaction acknowledges each
request. Jobs that had a line keep it; a job's board line goes when it ends, and the board
is deleted once it is empty. A board is status traffic: it waits for its turn
(`status_turn`) and renders the jobs as they are then."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from adapters.telegram.status import not_modified, screen_key, stage, status_turn
from adapters.telegram.texts import MAX_TEXT, board_buttons, board_text
from bot.catalog import Catalog
from bot.models import Job

__all__ = ["BOARD_AFTER", "BOARD_INTERVAL_S", "StatusBoards"]

log = logging.getLogger(__name__)

BOARD_AFTER = 2  # a group with more running jobs than this shows new ones on a board
BOARD_INTERVAL_S = 3.0  # a board shows a change of state at most this long after the last
BOARD_PROGRESS_FACTOR = 5  # and a new percentage only after five times that


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
    return tuple((job.id, stage(job)[0], job.queue_position or 0) for job in jobs)


class StatusBoards:
    """The status boards of busy chats, each brought up to date by a task of its own.
    `newest` says what a job's status should show now (None once it has ended)."""

    def __init__(
        self,
        bot: Bot,
        catalog: Catalog,
        *,
        interval_s: float,
        newest: Callable[[Job], Awaitable[Job | None]],
    ) -> None:
        self.bot = bot
        self.catalog = catalog
        self.interval_s = interval_s
        self.newest = newest
        self._boards: dict[int, _Board] = {}

    def has(self, chat: int, job_id: str) -> bool:
        """Whether the job is on its chat's board."""
        board = self._boards.get(chat)
        return board is not None and job_id in board.jobs

    def update(self, job: Job) -> None:
        """Put the job on its chat's board, or show its newer state there."""
        chat = int(job.origin.chat_id)
        board = self._boards.setdefault(chat, _Board())
        on = board.jobs.get(job.id)
        if on is None or stage(job) >= stage(on):
            board.jobs[job.id] = job
        self._kick(chat)

    def remove(self, chat: int, job_id: str) -> None:
        """The job ended: its line goes (and the board, once empty)."""
        board = self._boards.get(chat)
        if board is not None and board.jobs.pop(job_id, None) is not None:
            self._kick(chat)

    def _kick(self, chat: int) -> None:
        board = self._boards.get(chat)
        if board is None:
            return
        board.dirty = True
        board.wake.set()
        if board.task is None:
            board.task = asyncio.create_task(self._show(chat), name=f"board-{chat}")

    async def _view(self, board: _Board) -> list[Job]:
        """The board's jobs as they are now; ended ones leave it."""
        jobs = []
        for job_id, job in list(board.jobs.items()):
            newest = await self.newest(job)
            if newest is None:
                board.jobs.pop(job_id, None)
            elif job_id in board.jobs:
                board.jobs[job_id] = newest
                jobs.append(newest)
        return jobs

    async def _show(self, chat: int) -> None:
        """Bring the chat's board up to date until nothing changed meanwhile, rendered when
        its turn comes; deleted once empty. A job arriving, leaving or changing state is
        shown at most `interval_s` after the last board request, a new percentage only
        after `BOARD_PROGRESS_FACTOR` times that."""
        board = self._boards[chat]
        loop = asyncio.get_running_loop()
        try:
            while board.dirty:
                board.dirty = False
                jobs = await self._view(board)
                if not jobs and board.message_id is None:
                    break
                if jobs and self._key(jobs) == board.shown:
                    continue
                interval = self.interval_s
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
                async with status_turn(self.bot, chat, new=board.message_id is None):
                    await self._request(chat, board, await self._view(board))
                board.at = loop.time()
        except Exception as exc:  # a board is cosmetic: the next change tries again
            log.info("telegram chat %s: status board not shown (%s)", chat, exc)
        finally:
            board.task = None
            if not board.jobs and board.message_id is None:
                self._boards.pop(chat, None)
            elif board.dirty:
                self._kick(chat)

    def _key(self, jobs: list[Job]) -> str:
        return screen_key(board_text(jobs, self.catalog), board_buttons(jobs))

    async def _request(self, chat: int, board: _Board, jobs: list[Job]) -> None:
        if not jobs:
            message_id, board.message_id, board.shown = board.message_id, None, None
            if message_id is not None:
                try:
                    await self.bot.delete_message(chat_id=chat, message_id=message_id)
                except TelegramError as exc:
                    log.info("telegram chat %s: board %s not deleted (%s)", chat, message_id, exc)
            return
        text, markup = board_text(jobs, self.catalog), board_buttons(jobs)
        key = screen_key(text, markup)
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
                if not not_modified(exc):
                    raise
        board.shown = key

    async def aclose(self) -> None:
        """Call off the boards' tasks: boards are cosmetic."""
        tasks = [b.task for b in self._boards.values() if b.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
