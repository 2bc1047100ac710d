"""Creative sessions on Discord: `/session start|end|show|gallery`, the ❤️ vote and Remix
buttons under an entry's result, and the Remix modal. Sessions are the core's
(`core.sessions`, its words in bot/messages.py); this asks and shows. The card and the recap
are posted by session_sink.py. The twin of telegram/sessions.py.

How each is answered
    /session start: privately, its refusals first (bad options, the core's rules), while
    everyone sees the card the core has the session sink post. With `thread: True` the card
    is posted first, the session starts in the thread to be opened from it (such a thread
    takes the card's id), then the thread is opened: entries are made there, the card stays
    in the channel above it. That takes a few calls, so a private "thinking…" comes first
    and becomes the answer (or the refusal).
    /session end: publicly (everyone should know), its refusals privately.
    /session show: privately. /session gallery: publicly (the link is for everyone).
    ❤️: the presser is answered privately (counted, taken back, or why not, in the core's
    words); the count on the button is then edited, coalesced per message (`VoteCounts`).
    Remix: a modal asks for the prompt; its submit starts a job as a button does (a private
    refusal first, then the public "thinking…" that becomes the new entry's status:
    generate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.answers import apologise, refuse, refuse_deferred
from adapters.discord.generate import GenerateHandlers
from adapters.discord.parse import (
    SessionOptions,
    is_admin,
    is_thread,
    origin_of,
    require_post_permission,
)
from adapters.discord.session_sink import DiscordSessionSink
from adapters.discord.sink import DISCORD_FAILURES
from adapters.discord.texts import (
    MAX_CONTENT,
    NO_GALLERY_HERE_TEXT,
    OOPS_TEXT,
    THREAD_FAILED_TEXT,
    THREAD_IN_THREAD_TEXT,
    no_thread_permission_text,
    session_started_text,
)
from adapters.discord.ui import recounted_view, remix_modal, shown_votes
from bot.app import Core
from bot.errors import RequestRejected
from bot.messages import (
    NO_SESSION,
    gallery_link_text,
    session_card_text,
    session_over_text,
    vote_text,
)
from bot.models import JobAction, Origin
from bot.sessions import Session, SessionSpec

__all__ = ["BUTTONS", "SessionHandlers", "VoteCounts"]

log = logging.getLogger(__name__)

BUTTONS = frozenset({JobAction.VOTE, JobAction.REMIX})
VOTE_EDIT_INTERVAL_S = 1.0  # an entry's vote count is edited at most this often

Interaction = discord.Interaction[Any]


class VoteCounts:
    """Keeps the count on each entry's vote button as stored, as cosmetic traffic: one edit
    per message at a time and at most one every `interval_s`; a press meanwhile only marks
    the message stale, and one more edit follows with the count read then. A burst of
    presses ends in the right count, in few edits."""

    def __init__(
        self,
        count_of: Callable[[str], Awaitable[int | None]],
        *,
        interval_s: float = VOTE_EDIT_INTERVAL_S,
    ) -> None:
        self.count_of = count_of
        self.interval_s = interval_s
        self._stale: set[int] = set()
        self._editing: dict[int, asyncio.Task[None]] = {}

    def changed(self, message: discord.Message, job_id: str) -> None:
        self._stale.add(message.id)
        if message.id not in self._editing:
            self._editing[message.id] = asyncio.create_task(
                self._refresh(message, job_id), name=f"discord-votes-{message.id}"
            )

    async def _refresh(self, message: discord.Message, job_id: str) -> None:
        shown = shown_votes(message, job_id)
        try:
            while message.id in self._stale:
                self._stale.discard(message.id)
                votes = await self.count_of(job_id)
                if votes is None or votes == shown:
                    continue
                await message.edit(view=recounted_view(message, job_id, votes))
                shown = votes
                await asyncio.sleep(self.interval_s)  # presses meanwhile: one edit after
        except Exception as exc:  # the count is cosmetic; the next press tries again
            log.info("job %s: vote count not shown (%r)", job_id, exc)
        finally:
            self._stale.discard(message.id)
            self._editing.pop(message.id, None)

    async def idle(self) -> None:
        """Until every edit in flight is done (tests; shutting down)."""
        while self._editing:
            await asyncio.gather(*self._editing.values(), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._editing.values()):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._editing.values(), return_exceptions=True)


class SessionHandlers:
    """The session commands, buttons and modal of one DiscordAdapter: `cards` posts what
    the core shows of a session, `generate` starts the remixes."""

    def __init__(self, core: Core, cards: DiscordSessionSink, generate: GenerateHandlers) -> None:
        self.core = core
        self.cards = cards
        self.generate = generate
        self.votes = VoteCounts(self._count)

    async def _count(self, job_id: str) -> int | None:
        entry = await self.core.sessions.entry_for_job(job_id)
        return None if entry is None else entry.votes

    def _presser(self, interaction: Interaction) -> Origin:
        return origin_of(interaction, None, self.core.clock.now())

    async def aclose(self) -> None:
        await self.votes.aclose()

    # -- /session start ----------------------------------------------------------------------

    async def on_start(self, interaction: Interaction, options: SessionOptions) -> None:
        try:
            await self._start(interaction, options)
        except Exception:
            log.exception("discord: /session start %s failed", interaction.id)
            await apologise(interaction, OOPS_TEXT)

    async def _start(self, interaction: Interaction, options: SessionOptions) -> None:
        try:
            spec = self.core.sessions.parse_start(options.text())
            require_post_permission(interaction)
            if options.thread:
                _require_thread(interaction)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        origin, admin = self._presser(interaction), is_admin(interaction)
        if options.thread:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self._start_in_thread(interaction, origin, spec, admin=admin)
            return
        try:
            session = await self.core.sessions.start(origin, spec, is_admin=admin)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        await interaction.response.send_message(session_started_text(session), ephemeral=True)

    async def _start_in_thread(
        self, interaction: Interaction, origin: Origin, spec: SessionSpec, *, admin: bool
    ) -> None:
        channel_id = int(origin.chat_id)
        guild_id = int(origin.guild_id) if origin.guild_id else None
        card_id = await self.cards.post_placeholder(channel_id, guild_id, spec.theme)
        thread_id = str(card_id)  # a thread started from a message takes the message's id
        there = dataclasses.replace(origin, chat_id=thread_id, thread_id=thread_id)
        self.cards.adopt(thread_id, channel_id, card_id)
        try:
            session = await self.core.sessions.start(there, spec, is_admin=admin)
        except RequestRejected as exc:
            self.cards.forget(thread_id)
            await self.cards.discard(channel_id, guild_id, card_id)
            await refuse_deferred(interaction, exc)
            return
        try:
            await self.cards.open_thread(channel_id, guild_id, card_id, session.theme)
        except DISCORD_FAILURES as exc:
            log.warning("session %s: its thread was not opened (%r); ending it", session.id, exc)
            await self.core.sessions.end(there, is_admin=True)
            self.cards.forget(thread_id)
            await self.cards.discard(channel_id, guild_id, card_id)
            await interaction.edit_original_response(content=THREAD_FAILED_TEXT)
            return
        log.info("session %s: in thread %s of channel %s", session.id, thread_id, channel_id)
        text = session_started_text(session, thread_id=thread_id)
        await interaction.edit_original_response(content=text)

    # -- /session end, show, gallery ---------------------------------------------------------

    async def on_end(self, interaction: Interaction) -> None:
        async def end(origin: Origin) -> tuple[str, bool]:
            session = await self.core.sessions.end(origin, is_admin=is_admin(interaction))
            return session_over_text(session), False

        await self._answer(interaction, end)

    async def on_show(self, interaction: Interaction) -> None:
        async def show(origin: Origin) -> tuple[str, bool]:
            figures = await self.core.sessions.current(origin)
            if figures is None:
                return NO_SESSION, True
            return session_card_text(figures, self.core.clock.now()), True

        await self._answer(interaction, show)

    async def on_gallery(self, interaction: Interaction) -> None:
        async def gallery(origin: Origin) -> tuple[str, bool]:
            session = await self._latest_here(origin)
            if session is None:
                return NO_GALLERY_HERE_TEXT, True
            return gallery_link_text(session, self.core.sessions.gallery_url(session)), False

        await self._answer(interaction, gallery)

    async def _latest_here(self, origin: Origin) -> Session | None:
        """The session running here, else the newest that ran here."""
        figures = await self.core.sessions.current(origin)
        if figures is not None:
            return figures.session
        here = (origin.platform, origin.chat_id, origin.thread_id or None)
        for past in await self.core.sessions.list_sessions():
            s = past.session
            if (s.platform, s.chat_id, s.thread_id or None) == here:
                return s
        return None

    async def _answer(
        self,
        interaction: Interaction,
        make: Callable[[Origin], Awaitable[tuple[str, bool]]],
    ) -> None:
        """Answer a command with what the core says (privately when it says so), or its
        refusal (privately)."""
        try:
            try:
                text, private = await make(self._presser(interaction))
            except RequestRejected as exc:
                await refuse(interaction, exc)
                return
            await interaction.response.send_message(text[:MAX_CONTENT], ephemeral=private)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await apologise(interaction, OOPS_TEXT)

    # -- ❤️ and Remix ------------------------------------------------------------------------

    async def button(self, interaction: Interaction, action: JobAction, job_id: str) -> None:
        """❤️ or Remix (the adapter apologises if this raises)."""
        if action is JobAction.VOTE:
            await self._vote(interaction, job_id)
        else:
            entry = await self.core.sessions.entry_for_job(job_id)
            modal = remix_modal(job_id, entry.number if entry is not None else None)
            await interaction.response.send_modal(modal)

    async def _vote(self, interaction: Interaction, job_id: str) -> None:
        try:
            outcome = await self.core.sessions.vote(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        await interaction.response.send_message(vote_text(outcome), ephemeral=True)
        if interaction.message is not None:
            self.votes.changed(interaction.message, job_id)

    async def on_remix_prompt(self, interaction: Interaction, job_id: str, prompt: str) -> None:
        try:
            await self.generate.remix(interaction, job_id, prompt)
        except Exception:
            log.exception("discord: remix of job %s failed", job_id)
            await apologise(interaction, await self.generate.apology(interaction))


def _require_thread(interaction: Interaction) -> None:
    """A session in a thread of its own is opened from a channel, by a bot that may."""
    if is_thread(interaction.channel):
        raise RequestRejected(THREAD_IN_THREAD_TEXT, code="session_thread")
    perms = interaction.app_permissions
    needed = (
        ("Create Public Threads", perms.create_public_threads),
        ("Send Messages in Threads", perms.send_messages_in_threads),
    )
    missing = [name for name, ok in needed if not ok]
    if missing and perms.value != 0:  # 0: not in the payload; opening it will tell
        raise RequestRejected(no_thread_permission_text(missing), code="discord_permissions")
