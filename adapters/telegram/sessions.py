"""Creative sessions on Telegram: /session (start, end, gallery, or how the current one
stands), the ❤️ vote and 🎨 Remix buttons under entries, and which /imagine remixes an entry
(`remix_parent`; generate.py makes it). The rules and their words are the core's
(core.sessions, bot/messages.py); this only asks and shows. The card and the recap are the
session sink's (session_sink.py).

A vote press is answered at once, to the presser only; the count on the button follows,
coalesced (`VoteCounts`): one task per message edits its keyboard, as status traffic, to the
count stored when its turn comes, so a burst of presses ends in the right count with a few
edits. The 🎨 Remix button answers how to remix (a reply to the image with /imagine): a
pop-up costs nothing of the group's 20 messages a minute, where a ForceReply prompt would
post a message per press."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Bot, CallbackQuery, Chat, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, TelegramError

from adapters.telegram.parse import TelegramCommand
from adapters.telegram.session_sink import TelegramSessionSink
from adapters.telegram.sink import TelegramSink
from adapters.telegram.status import not_modified, status_turn
from adapters.telegram.texts import (
    CALLBACK_ANSWER_MAX,
    VOTE_LABEL,
    clip,
    remix_how,
    session_usage_text,
    voted_job,
    with_votes,
)
from bot.app import Core
from bot.errors import RequestRejected
from bot.messages import (
    NO_SESSION,
    NOT_AN_ENTRY,
    gallery_link_text,
    session_card_text,
    session_over_text,
    vote_text,
)
from bot.models import JobAction, Kind, Origin

__all__ = ["BUTTONS", "COMMANDS", "SessionHandlers", "VoteCounts", "remix_parent"]

log = logging.getLogger(__name__)

COMMANDS = frozenset({"session"})
BUTTONS = frozenset({JobAction.VOTE, JobAction.REMIX})
VOTE_EDIT_INTERVAL_S = 1.0  # a message's vote count is edited at most this often

IsAdmin = Callable[[Chat, Origin], Awaitable[bool]]
Votes = Callable[[str], Awaitable[int | None]]


def remix_parent(message: Message, kind: Kind, has_images: bool) -> str | None:
    """The entry a command remixes: /imagine (with no photo of its own) replying to an
    entry's result, which carries that entry's vote button; None for anything else."""
    replied = message.reply_to_message
    if kind is not Kind.IMAGE or has_images or replied is None:
        return None
    return voted_job(replied.reply_markup)


@dataclass(slots=True)
class _Count:
    """A result message whose vote count is kept current: its keyboard as last shown."""

    chat_id: int
    job_id: str
    markup: InlineKeyboardMarkup
    dirty: bool = True
    at: float = float("-inf")  # loop time of its last edit
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _label(markup: InlineKeyboardMarkup, job_id: str) -> str | None:
    data = f"{JobAction.VOTE}:{job_id}"
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return None


class VoteCounts:
    """The ❤️ counts on entries' results (see the module docstring). `votes(job_id)` reads
    an entry's votes as stored (None: no longer an entry)."""

    def __init__(self, bot: Bot, votes: Votes, *, interval_s: float = VOTE_EDIT_INTERVAL_S):
        self.bot = bot
        self.votes = votes
        self.interval_s = interval_s
        self._counts: dict[tuple[int, int], _Count] = {}
        self._closed = False

    def pressed(
        self, chat_id: int, message_id: int, job_id: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        """A vote on `job_id` under this message changed: show its count soon. `markup`:
        the keyboard as the presser saw it (used until this process edited it)."""
        key = (chat_id, message_id)
        count = self._counts.get(key)
        if self._closed:
            return
        if count is None:
            if markup is None:
                return  # not one of our entries' keyboards as far as we can see
            count = self._counts[key] = _Count(chat_id, job_id, markup)
        count.dirty = True
        if count.task is None:
            count.task = asyncio.create_task(self._keep(key), name=f"votes-{chat_id}-{message_id}")

    async def _keep(self, key: tuple[int, int]) -> None:
        count = self._counts[key]
        loop = asyncio.get_running_loop()
        try:
            while True:
                wait = count.at + self.interval_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # presses meanwhile are counted below
                if not count.dirty:
                    break  # no press since the last edit, for a whole interval
                async with status_turn(self.bot, count.chat_id):
                    count.dirty = False
                    if await self._edit(key, count):
                        count.at = loop.time()
        except TelegramError as exc:  # cosmetic: the next press tries again
            log.info("telegram chat %s: vote count of %s not shown (%s)", key[0], key[1], exc)
        except Exception:
            log.exception("telegram chat %s: vote count of %s not shown", key[0], key[1])
        finally:
            self._counts.pop(key, None)

    async def _edit(self, key: tuple[int, int], count: _Count) -> bool:
        """Show the stored count; False when nothing was sent (it shows that already)."""
        votes = await self.votes(count.job_id)
        if votes is None or _label(count.markup, count.job_id) == VOTE_LABEL.format(votes=votes):
            return False
        markup = with_votes(count.markup, count.job_id, votes)
        try:
            await self.bot.edit_message_reply_markup(key[0], key[1], reply_markup=markup)
        except BadRequest as exc:
            if not not_modified(exc):
                raise
        count.markup = markup
        return True

    async def aclose(self) -> None:
        """Call off the counts still to show: they are cosmetic."""
        self._closed = True
        tasks = [c.task for c in self._counts.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._counts.clear()


class SessionHandlers:
    """/session and the session buttons of one TelegramAdapter; `cards` is its SessionSink
    (the card and the recap), for the core to register."""

    def __init__(
        self,
        core: Core,
        bot: Bot,
        sink: TelegramSink,
        is_admin: IsAdmin,
        *,
        upload_limit_mb: int,
        vote_interval_s: float = VOTE_EDIT_INTERVAL_S,
    ) -> None:
        self.core = core
        self.bot = bot
        self.sink = sink
        self.is_admin = is_admin
        self.counts = VoteCounts(bot, self._votes, interval_s=vote_interval_s)
        self.cards = TelegramSessionSink(
            bot, core.notifier.fetch_results, core.clock, upload_limit_mb=upload_limit_mb
        )

    async def _votes(self, job_id: str) -> int | None:
        entry = await self.core.sessions.entry_for_job(job_id)
        return None if entry is None else entry.votes

    async def aclose(self) -> None:
        await self.counts.aclose()

    # -- /session --------------------------------------------------------------------------

    async def command(self, chat: Chat, command: TelegramCommand, origin: Origin) -> None:
        """/session start <theme> [options], /session end, /session gallery, /session."""
        words = command.args.split(maxsplit=1)
        sub = words[0].lower() if words else ""
        rest = words[1] if len(words) > 1 else ""
        sessions = self.core.sessions
        try:
            if sub == "start":
                spec = sessions.parse_start(rest)
                session = await sessions.start(
                    origin, spec, is_admin=await self.is_admin(chat, origin)
                )
                log.info(
                    "telegram: chat %s: session %s started by user %s",
                    origin.chat_id,
                    session.id,
                    origin.user_id,
                )
                return  # the card is the answer: the session loop posts it now
            if sub == "end":
                ended = await sessions.end(origin, is_admin=await self.is_admin(chat, origin))
                text = session_over_text(ended)
            elif sub == "gallery":
                text = await self._gallery(origin)
            elif not sub:
                figures = await sessions.current(origin)
                now = self.core.clock.now()
                text = NO_SESSION if figures is None else session_card_text(figures, now)
            else:
                text = session_usage_text()
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s message %s: /session %s refused (%s)",
                origin.chat_id,
                origin.message_id,
                sub,
                exc.code,
            )
            text = exc.message
        await self.sink.reply(origin, text)

    async def _gallery(self, origin: Origin) -> str:
        """The gallery of the session running here, else of the last one that ran here."""
        sessions = self.core.sessions
        figures = await sessions.current(origin)
        if figures is None:
            here = (origin.platform, origin.chat_id, origin.thread_id)
            figures = next(
                (
                    f
                    for f in await sessions.list_sessions()
                    if (f.session.platform, f.session.chat_id, f.session.thread_id) == here
                ),
                None,
            )
        if figures is None:
            return NO_SESSION
        return gallery_link_text(figures.session, sessions.gallery_url(figures.session))

    # -- buttons ---------------------------------------------------------------------------

    async def button(
        self, query: CallbackQuery, action: JobAction, job_id: str, origin: Origin
    ) -> None:
        """❤️ (vote, or take the vote back) or 🎨 Remix, pressed by `origin.user_id`."""
        try:
            if action is JobAction.VOTE:
                await self._vote(query, job_id, origin)
            else:
                entry = await self.core.sessions.entry_for_job(job_id)
                if entry is None:
                    raise RequestRejected(NOT_AN_ENTRY, code="not_an_entry")
                await _answer(query, remix_how(entry.number), alert=True)
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s: %s on job %s by user %s refused (%s)",
                origin.chat_id,
                action,
                job_id,
                origin.user_id,
                exc.code,
            )
            await _answer(query, exc.message, alert=True)

    async def _vote(self, query: CallbackQuery, job_id: str, origin: Origin) -> None:
        outcome = await self.core.sessions.vote(job_id, origin)
        log.info(
            "telegram: chat %s: vote on job %s by user %s %s (%d)",
            origin.chat_id,
            job_id,
            origin.user_id,
            "counted" if outcome.counted else "taken back",
            outcome.votes,
        )
        await _answer(query, vote_text(outcome))
        result = query.message
        if isinstance(result, Message):
            self.counts.pressed(result.chat.id, result.message_id, job_id, result.reply_markup)


async def _answer(query: CallbackQuery, text: str, *, alert: bool = False) -> None:
    """Answer a button press; a query can expire, and what it did stands regardless."""
    try:
        await query.answer(clip(text, CALLBACK_ANSWER_MAX), show_alert=alert)
    except TelegramError as exc:
        log.info("telegram: callback query %s not answered (%s)", query.id, exc)
