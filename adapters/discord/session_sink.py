"""Creative sessions as Discord shows them (the core decides; this only posts):

EntrySink           the DiscordSink whose results of session entries carry their label
                    ("🎨 #3 · remix of #1 by Ann") and, under an image or video, the ❤️ vote
                    button with its count and (under an image) Remix
DiscordSessionSink  the core's `SessionSink`: the session card (posted, pinned where the bot
                    may pin, kept current, unpinned once it shows the end) and the recap

The card
    Posted in the session's channel (or thread) as the bot's own message, so it can be
    edited for as long as the session runs (an interaction's token lasts 15 minutes). A
    session in a thread of its own is started from its card: `/session start` posts the card
    in the channel first, and the thread opened from it takes the card's id, so the card
    stays in the channel, above the thread. Its id is then kept as "<channel>:<message>".
    A card someone deleted is posted again while its session runs. A refusal to pin is
    logged, never shown.

The recap
    One message in the session's channel (or thread): the headline, the figures, each top
    entry's credit and the gallery link (bot/messages.py words) above the top entries'
    files as one gallery, each file with its credit as alt text. An entry whose file was
    not kept, or does not fit Discord's upload limit, is an embed with its result's link.
    Its nonce makes a retried post land once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.parse import DEFAULT_UPLOAD_LIMIT, PLATFORM
from adapters.discord.sink import (
    DISCORD_FAILURES,
    DiscordSink,
    Rendered,
    delivery_error,
    is_too_large,
)
from adapters.discord.texts import (
    MAX_CONTENT,
    card_placeholder_text,
    entry_note,
    thread_name,
    vote_label,
)
from adapters.discord.ui import JobButton
from bot.messages import entry_credit, recap_text, session_card_text
from bot.models import Job, JobAction, JobState, Kind
from bot.ports import Clock, ResultFile
from bot.sessions import Entry, Recap, Session, SessionFigures

__all__ = ["DiscordSessionSink", "EntryRendered", "EntrySink", "entry_result"]

log = logging.getLogger(__name__)

MAX_FILES = 10  # attachments in one message
MAX_EMBEDS = 10
MAX_ALT_TEXT = 1024  # an attachment's description
THREAD_ARCHIVE_MINUTES = 10080  # a session's thread stays listed for a week of quiet


# -- entries' results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryRendered(Rendered):
    """A session entry's result: its vote button shows the entry's count."""

    votes: int = 0

    def view(self) -> discord.ui.View | None:
        if not self.buttons:
            return None
        view = discord.ui.View(timeout=None)
        for action in self.buttons:
            label = vote_label(self.votes) if action is JobAction.VOTE else None
            view.add_item(JobButton(action, self.job_id, label=label))
        return view


def entry_result(result: Rendered, job: Job, entry: Entry) -> EntryRendered:
    """`result` labelled as the entry it is, with ❤️ (and Remix under an image) when it
    succeeded."""
    content = entry_note(entry) + (f"\n{result.content}" if result.content else "")
    buttons = result.buttons
    if job.state is JobState.SUCCEEDED:
        buttons += (JobAction.VOTE,)
        if job.kind is Kind.IMAGE:
            buttons += (JobAction.REMIX,)
    return EntryRendered(
        result.job_id, content, result.embed, result.uploads, buttons, votes=entry.votes
    )


class EntrySink(DiscordSink):
    """A DiscordSink that shows session entries as entries. `entry_of` is the core's
    `sessions.entry_for_job`; a failure to read it delivers the result unlabelled rather
    than not at all. Results shown again privately (Send again) are not labelled."""

    def __init__(
        self, *args: Any, entry_of: Callable[[str], Awaitable[Entry | None]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.entry_of = entry_of
        self._entries: dict[str, Entry] = {}  # jobs being delivered that are entries

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        try:
            entry = await self.entry_of(job.id)
        except Exception:
            log.exception("job %s: its session entry could not be read; not labelled", job.id)
            entry = None
        if entry is not None:
            self._entries[job.id] = entry
        try:
            await super().deliver(job, files)
        finally:
            self._entries.pop(job.id, None)

    def render(
        self, job: Job, files: Sequence[ResultFile], *, links_only: bool = False
    ) -> Rendered:
        result = super().render(job, files, links_only=links_only)
        entry = self._entries.get(job.id)
        return result if entry is None else entry_result(result, job, entry)


# -- the card and the recap -------------------------------------------------------------------


def _card_id(session: Session, channel_id: int, message_id: int) -> str:
    """How a card's id is kept: its message id, or "<channel>:<message>" when it is not in
    the session's own channel (the card of a session in a thread is above the thread)."""
    if str(channel_id) == session.chat_id:
        return str(message_id)
    return f"{channel_id}:{message_id}"


def _card_at(session: Session) -> tuple[int, int]:
    card = session.card_message_id or ""
    channel, sep, message = card.partition(":")
    return (int(channel), int(message)) if sep else (int(session.chat_id), int(card))


def _open(session: Session, now: float) -> bool:
    return session.open and session.ends_at > now


@dataclass(frozen=True, slots=True)
class _Album:
    """The recap's top entries: files to upload (path, filename, credit) and embeds."""

    uploads: tuple[tuple[Path, str, str], ...]
    embeds: tuple[discord.Embed, ...]

    def files(self, stack: ExitStack) -> list[discord.File]:
        out = []
        for path, name, credit in self.uploads:
            file = discord.File(path, filename=name, description=credit[:MAX_ALT_TEXT])
            stack.callback(file.close)
            out.append(file)
        return out


class DiscordSessionSink:
    """The core's SessionSink for Discord. Needs a logged-in client (REST only);
    `results_dir` is where the core keeps result files (MediaStore.results_dir)."""

    platform = PLATFORM

    def __init__(
        self,
        client: discord.Client,
        clock: Clock,
        results_dir: Path,
        *,
        timeout_s: float,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
    ) -> None:
        self.client = client
        self.clock = clock
        self.results_dir = results_dir
        self.timeout_s = timeout_s
        self.upload_limit = upload_limit
        # Cards /session start posted for sessions in a thread of their own, by thread id:
        # (channel, message), taken as the card when the core first shows it.
        self._adopted: dict[str, tuple[int, int]] = {}

    def _channel(self, channel_id: int, guild_id: int | str | None) -> Any:
        guild = int(guild_id) if guild_id else None
        return self.client.get_partial_messageable(channel_id, guild_id=guild)

    def _message(self, session: Session, channel_id: int, message_id: int) -> Any:
        return self._channel(channel_id, session.scope_id).get_partial_message(message_id)

    # -- a session in a thread of its own (for /session start) -------------------------------

    async def post_placeholder(self, channel_id: int, guild_id: int | None, theme: str) -> int:
        """The card of a session about to start in a thread: its message id is the thread's."""
        message = await self._channel(channel_id, guild_id).send(card_placeholder_text(theme))
        return int(message.id)

    def adopt(self, thread_id: str, channel_id: int, message_id: int) -> None:
        self._adopted[thread_id] = (channel_id, message_id)

    def forget(self, thread_id: str) -> None:
        self._adopted.pop(thread_id, None)

    async def discard(self, channel_id: int, guild_id: int | None, message_id: int) -> None:
        """Take back a card posted for a session that did not start (best effort)."""
        try:
            await self._channel(channel_id, guild_id).get_partial_message(message_id).delete()
        except DISCORD_FAILURES as exc:
            log.info("discord: card %s not deleted (%r)", message_id, exc)

    async def open_thread(
        self, channel_id: int, guild_id: int | None, message_id: int, theme: str
    ) -> None:
        """The session's thread, from its card (the thread takes the card's id)."""
        message = self._channel(channel_id, guild_id).get_partial_message(message_id)
        await message.create_thread(
            name=thread_name(theme), auto_archive_duration=THREAD_ARCHIVE_MINUTES
        )

    # -- SessionSink -------------------------------------------------------------------------

    async def show_card(self, figures: SessionFigures) -> str | None:
        session = figures.session
        text = session_card_text(figures, self.clock.now())[:MAX_CONTENT]
        try:
            async with asyncio.timeout(self.timeout_s):
                if session.card_message_id:
                    return await self._edit_card(session, text)
                adopted = self._adopted.get(session.thread_id or "")
                if adopted is not None:
                    channel_id, message_id = adopted
                    await self._message(session, channel_id, message_id).edit(content=text)
                    self.forget(session.thread_id or "")
                    await self._pin(session, channel_id, message_id)
                    return _card_id(session, channel_id, message_id)
                return await self._post_card(session, text, int(session.chat_id))
        except DISCORD_FAILURES as exc:
            raise delivery_error(exc) from None

    async def _edit_card(self, session: Session, text: str) -> str | None:
        channel_id, message_id = _card_at(session)
        try:
            await self._message(session, channel_id, message_id).edit(content=text)
        except discord.NotFound:
            if not _open(session, self.clock.now()):
                log.info("session %s: its card is gone; it has ended", session.id)
                return None
            log.info("session %s: its card is gone; posting it again", session.id)
            return await self._post_card(session, text, channel_id)
        if not _open(session, self.clock.now()):
            await self._unpin(session, channel_id, message_id)
        return None

    async def _post_card(self, session: Session, text: str, channel_id: int) -> str:
        message = await self._channel(channel_id, session.scope_id).send(
            text, nonce=f"card-{session.id}"
        )
        log.info("session %s: card posted in channel %s (%s)", session.id, channel_id, message.id)
        await self._pin(session, channel_id, message.id)
        return _card_id(session, channel_id, message.id)

    async def _pin(self, session: Session, channel_id: int, message_id: int) -> None:
        """Pinned where the bot may pin; a refusal is only logged."""
        try:
            await self._message(session, channel_id, message_id).pin()
        except DISCORD_FAILURES as exc:
            log.info("session %s: card not pinned (%s)", session.id, delivery_error(exc))

    async def _unpin(self, session: Session, channel_id: int, message_id: int) -> None:
        try:
            await self._message(session, channel_id, message_id).unpin()
        except DISCORD_FAILURES as exc:
            log.info("session %s: card not unpinned (%s)", session.id, delivery_error(exc))

    async def post_recap(self, recap: Recap) -> None:
        session = recap.figures.session
        album = self._album(recap)
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    await self._send_recap(session, _recap_content(recap), album)
                except discord.HTTPException as exc:
                    if not is_too_large(exc):
                        raise
                    log.info("session %s: recap files refused as too large; links", session.id)
                    await self._send_recap(session, _recap_content(recap), self._album(recap, 0))
        except DISCORD_FAILURES as exc:
            raise delivery_error(exc) from None

    async def _send_recap(self, session: Session, content: str, album: _Album) -> None:
        options: dict[str, Any] = {"nonce": f"recap-{session.id}"}
        if album.embeds:
            options["embeds"] = list(album.embeds)
        with ExitStack() as stack:
            files = album.files(stack)
            if files:
                options["files"] = files
            channel = self._channel(int(session.chat_id), session.scope_id)
            message = await channel.send(content, **options)
        log.info(
            "session %s: recap posted in channel %s (%s; %d files, %d links)",
            session.id,
            session.chat_id,
            message.id,
            len(album.uploads),
            len(album.embeds),
        )

    def _album(self, recap: Recap, budget: int | None = None) -> _Album:
        """Each top entry as a file while they fit the upload limit (all together), else as
        an embed with its result's link."""
        room = self.upload_limit if budget is None else budget
        uploads: list[tuple[Path, str, str]] = []
        embeds: list[discord.Embed] = []
        for entry in recap.top:
            credit = entry_credit(entry)
            path = self._kept(recap, entry)
            size = path.stat().st_size if path is not None else None
            if path is not None and size is not None and size <= room and len(uploads) < MAX_FILES:
                uploads.append((path, f"entry-{entry.number}{path.suffix}", credit))
                room -= size
            elif entry.job.result_urls and len(embeds) < MAX_EMBEDS:
                embeds.append(_link_embed(entry, credit))
        return _Album(tuple(uploads), tuple(embeds))

    def _kept(self, recap: Recap, entry: Entry) -> Path | None:
        for name in recap.files.get(entry.number, ()):
            path = self.results_dir / name
            if path.is_file():
                return path
        return None


def _link_embed(entry: Entry, credit: str) -> discord.Embed:
    url = entry.job.result_urls[0]
    embed = discord.Embed(title=f"#{entry.number}", url=url, description=credit[:4000])
    if entry.kind is Kind.IMAGE:
        embed.set_image(url=url)
    return embed


def _recap_content(recap: Recap) -> str:
    """The recap's words within Discord's 2000 characters: the last credits go first."""
    top = recap.top
    while True:
        text = recap_text(dataclasses.replace(recap, top=top))
        if len(text) <= MAX_CONTENT or not top:
            return text[:MAX_CONTENT]
        top = top[:-1]
