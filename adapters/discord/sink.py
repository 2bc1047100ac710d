"""Progress and results in Discord, from the stored job alone (REST with the bot token and
the interaction token kept in `job.origin.context`), so it works after a restart.

The status message is the interaction's response (a slash command's deferred reply, or a
button press's). While the interaction token lives it is edited: progress (best effort:
dropped when slow, unchanged or older than what is shown or stored, and once the stored
job has ended; at most one edit in flight per interaction, and an update that comes
meanwhile waits for it, newest only; a job shown waiting or being sent is looked up once
more, since the next update may be long in coming), with a Cancel button while
the job waits on our side, then the result. After the token's 15 minutes, or
when Discord says it is gone (401 code 50027, 404), the result is posted to the channel as
a reply that mentions the asker, with a nonce derived from the job id and
`enforce_nonce`, so a retried post is not posted twice. Every delivery path is idempotent:
edits are replayed as they are, posts are de-duplicated by their nonce.

The answers to an interaction (refusals, apologies, the public "thinking…") are in
answers.py.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.parse import DEFAULT_UPLOAD_LIMIT, PLATFORM
from adapters.discord.texts import link_note, ready_text
from adapters.discord.ui import JobButton, waiting_view
from bot.catalog import Catalog
from bot.errors import DeliveryError, PermanentDeliveryError
from bot.messages import failure_text, progress_text, short_prompt
from bot.models import Job, JobAction, JobState, Kind
from bot.ports import Clock, ResultFile

__all__ = ["DISCORD_FAILURES", "DiscordSink", "Rendered", "delivery_error", "is_too_large"]

log = logging.getLogger(__name__)

INTERACTION_TOKEN_TTL_S = 15 * 60.0
TOKEN_MARGIN_S = 60.0  # stop using an interaction token this long before Discord does
MAX_FILES = 10  # attachments in one message
REMEMBER_DELIVERED = 10_000  # job ids the sink keeps to drop late progress updates
# Invalid webhook token, unknown webhook, unknown message, unknown interaction.
TOKEN_GONE_CODES = frozenset({50027, 10015, 10008, 10062})
TOO_LARGE_CODE = 40005

# What a Discord call can fail with (RateLimited is not an HTTPException).
DISCORD_FAILURES = (
    discord.HTTPException,
    discord.RateLimited,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def delivery_error(exc: BaseException) -> DeliveryError:
    """The one place a Discord failure becomes our error: retry later, or give up."""
    if isinstance(exc, discord.RateLimited):  # a 429 longer than max_ratelimit_timeout
        return DeliveryError("Discord rate limit", retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        detail = f"Discord HTTP {exc.status} code {exc.code}"
        if exc.status in (401, 429) or exc.status >= 500:
            return DeliveryError(detail)
        return PermanentDeliveryError(detail)  # 403, 404, other 4xx: it would fail again
    if isinstance(exc, TimeoutError):
        return DeliveryError("Discord did not answer in time")
    return DeliveryError(f"network error ({type(exc).__name__})")


def _token_gone(exc: discord.HTTPException) -> bool:
    """Discord no longer takes this interaction token (expired, or the message is gone)."""
    return exc.status in (401, 404) or exc.code in TOKEN_GONE_CODES


def is_too_large(exc: discord.HTTPException) -> bool:
    return exc.status == 413 or exc.code == TOO_LARGE_CODE


# Discord's alias for an interaction's original response, the status message of every job
# from Discord. discord.py types message ids as int but only formats them into the URL.
ORIGINAL_RESPONSE = cast(int, "@original")


@dataclass(frozen=True, slots=True)
class _Target:
    """The interaction whose original response is the status message."""

    application_id: int
    token: str


# How far along a progress text is: an update older than what is on screen is not shown.
_STAGE = {JobState.RECEIVED: 0, JobState.SUBMITTING: 1, JobState.QUEUED: 2, JobState.RUNNING: 3}


# After showing one of these, the stored job is looked at once more: the core drops an update
# that comes while another is being shown, and the next one may be long in coming (after
# "in line" or "sending", a job may sit in the gateway's queue for minutes at 0%).
_RECHECK = frozenset({JobState.RECEIVED, JobState.SUBMITTING})


def _stage(job: Job) -> tuple[int, int]:
    return _STAGE.get(job.state, len(_STAGE)), job.progress


@dataclass(frozen=True, slots=True)
class Rendered:
    """A terminal job as Discord shows it, wherever it is posted."""

    job_id: str
    content: str | None
    embed: discord.Embed | None
    uploads: tuple[tuple[Path, str], ...]
    buttons: tuple[JobAction, ...]

    def files(self, stack: ExitStack) -> list[discord.File]:
        """Fresh file objects for one request (a retry needs new ones), closed by `stack`."""
        out = []
        for path, name in self.uploads:
            file = discord.File(path, filename=name)
            stack.callback(file.close)
            out.append(file)
        return out

    def view(self) -> discord.ui.View | None:
        if not self.buttons:
            return None
        view = discord.ui.View(timeout=None)
        for action in self.buttons:
            view.add_item(JobButton(action, self.job_id))
        return view


class DiscordSink:
    """`DeliverySink` for jobs from Discord. Needs a logged-in client (REST only)."""

    platform = PLATFORM

    def __init__(
        self,
        client: discord.Client,
        catalog: Catalog,
        clock: Clock,
        *,
        progress_timeout_s: float,
        delivery_timeout_s: float,
        fresh: Callable[[str], Awaitable[Job | None]] | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.clock = clock
        self.progress_timeout_s = progress_timeout_s
        self.delivery_timeout_s = delivery_timeout_s
        # Reads a job as stored now: a place in line computed just before the job was sent
        # must not show it back in line (with a Cancel button).
        self.fresh = fresh
        self._locks: dict[str, asyncio.Lock] = {}  # one Discord call per job at a time
        self._shown: dict[str, str] = {}  # job id -> the progress text on screen
        self._stages: dict[str, tuple[int, int]] = {}  # job id -> how far the screen is
        self._pending: dict[str, Job] = {}  # the newest update that came during an edit
        self._finishing: set[str] = set()
        # Recently delivered jobs: a progress update that was already on its way when the
        # result went out must not overwrite the result.
        self._delivered: OrderedDict[str, None] = OrderedDict()

    def _target(self, job: Job) -> _Target | None:
        """The job's interaction, if its token is still good by our clock."""
        ctx = job.origin.context
        token, app_id = ctx.get("token"), ctx.get("application_id")
        if not (token and app_id):
            return None
        age = self.clock.now() - float(ctx.get("received_at") or 0.0)
        if age > INTERACTION_TOKEN_TTL_S - TOKEN_MARGIN_S:
            return None
        return _Target(int(app_id), str(token))

    async def _edit(self, target: _Target, **changes: Any) -> None:
        """Edit the interaction's original response (REST, the interaction token)."""
        webhook = discord.Webhook.partial(target.application_id, target.token, client=self.client)
        await webhook.edit_message(ORIGINAL_RESPONSE, **changes)

    # -- progress ----------------------------------------------------------------------------

    def can_edit(self, job: Job) -> bool:
        """Whether the job's status message can still be edited through its interaction."""
        return self._target(job) is not None

    async def progress(self, job: Job) -> str | None:
        """Edit the status message. Dropped, never queued, when the job is being delivered,
        the text is unchanged or older than what is shown, or Discord is slow; while another
        edit is in flight, the newest update is kept and shown right after it."""
        if self._target(job) is None or job.id in self._finishing or job.id in self._delivered:
            return None
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        if lock.locked():
            self._pending[job.id] = job
            return None
        async with lock:
            update: Job | None = job
            while update is not None:
                shown = await self._show(update)
                update = self._pending.pop(job.id, None)
                if update is None and shown is not None and shown.state in _RECHECK:
                    update = await self._moved_on(shown)
        return None

    async def _show(self, job: Job) -> Job | None:
        """Show `job`'s progress; returns the job as shown, or None when nothing changed."""
        if self.fresh is not None:
            # The edit goes now: checked against the stored row, so it never shows a state
            # older than the job's, and nothing is edited once the job has ended (its
            # result takes the interaction's route next, with nothing before it).
            stored = await self.fresh(job.id)
            if stored is None or stored.terminal:
                return None  # its delivery says how it ended
            if stored.status_message_id is None:
                return None  # recorded before its "thinking…": shown once that is there
            if stored.state is not JobState.RECEIVED and _stage(stored) > _stage(job):
                job = stored  # it left the line (or moved on) meanwhile: show where it is now
        target = self._target(job)
        text = progress_text(job, self.catalog)
        stage = _stage(job)
        if (
            target is None
            or job.id in self._finishing
            or job.id in self._delivered
            or self._shown.get(job.id) == text
            or stage < self._stages.get(job.id, stage)
        ):
            return None
        try:
            async with asyncio.timeout(self.progress_timeout_s):
                await self._edit(target, content=text, view=waiting_view(job))
        except DISCORD_FAILURES as exc:
            log.info("job %s: progress edit dropped (%s)", job.id, delivery_error(exc))
            return None
        self._shown[job.id] = text
        self._stages[job.id] = stage
        return job

    async def _moved_on(self, shown: Job) -> Job | None:
        """The job as stored, if it left the state just shown while we were showing it: the
        core drops updates that come while one is being shown, and after waiting in line or
        being sent the next one may be long in coming."""
        if self.fresh is None:
            return None
        stored = await self.fresh(shown.id)
        if stored is None or stored.terminal or stored.state is shown.state:
            return None
        return stored

    # -- delivery ----------------------------------------------------------------------------

    async def deliver(self, job: Job, files: Sequence[ResultFile]) -> None:
        self._finishing.add(job.id)  # no new progress edits from here on
        lock = self._locks.setdefault(job.id, asyncio.Lock())
        try:
            # Waits for an edit in flight (bounded by progress_timeout_s), so the result
            # is always the last thing written to the status message.
            async with asyncio.timeout(self.delivery_timeout_s), lock:
                try:
                    await self._deliver(job, self.render(job, files))
                except discord.HTTPException as exc:
                    if not is_too_large(exc):
                        raise
                    log.info("job %s: upload refused as too large; sending links", job.id)
                    await self._deliver(job, self.render(job, files, links_only=True))
        except DISCORD_FAILURES as exc:
            raise delivery_error(exc) from None
        finally:
            self._finishing.discard(job.id)
        self._locks.pop(job.id, None)
        self._shown.pop(job.id, None)
        self._stages.pop(job.id, None)
        self._pending.pop(job.id, None)
        self._delivered[job.id] = None
        while len(self._delivered) > REMEMBER_DELIVERED:
            self._delivered.popitem(last=False)

    async def _deliver(self, job: Job, result: Rendered) -> None:
        target = self._target(job)
        if target is not None:
            try:
                with ExitStack() as stack:
                    await self._edit(
                        target,
                        content=result.content,
                        embed=result.embed,
                        attachments=result.files(stack),
                        view=result.view(),
                    )
                log.info("job %s: result in the interaction response", job.id)
                return
            except discord.HTTPException as exc:
                if not _token_gone(exc):
                    raise
                log.info("job %s: interaction token gone (code %s)", job.id, exc.code)
        await self._post(job, result)

    async def _post(self, job: Job, result: Rendered) -> None:
        """A reply in the channel (or thread) that mentions the asker, once by its nonce."""
        origin = job.origin
        guild_id = int(origin.guild_id) if origin.guild_id else None
        channel = self.client.get_partial_messageable(int(origin.chat_id), guild_id=guild_id)
        what = "video" if job.kind is Kind.VIDEO else "image"
        if job.state is JobState.SUCCEEDED:
            mention = ready_text(origin.user_id, what)
            content = f"{mention}\n{result.content}" if result.content else mention
        else:
            content = f"<@{origin.user_id}> {result.content}"
        options: dict[str, Any] = {
            "nonce": f"genrelay-{job.id}",
            "allowed_mentions": discord.AllowedMentions(
                users=[discord.Object(int(origin.user_id))], replied_user=False
            ),
        }
        reply_to = job.status_message_id or origin.message_id
        if reply_to:
            options["reference"] = discord.MessageReference(
                message_id=int(reply_to),
                channel_id=int(origin.chat_id),
                guild_id=guild_id,
                fail_if_not_exists=False,  # the status message may have been deleted
            )
        if result.embed is not None:
            options["embed"] = result.embed
        view = result.view()
        if view is not None:
            options["view"] = view
        with ExitStack() as stack:
            files = result.files(stack)
            if files:
                options["files"] = files
            message = await channel.send(content, **options)
        log.info("job %s: result posted in channel %s (%s)", job.id, origin.chat_id, message.id)

    def render(
        self, job: Job, files: Sequence[ResultFile], *, links_only: bool = False
    ) -> Rendered:
        """The job's result (or failure) as a message: words, embed, uploads and buttons."""
        spec = self.catalog.resolve(job.model)
        if job.state is not JobState.SUCCEEDED:
            return Rendered(job.id, failure_text(job, self.catalog), None, (), (JobAction.REROLL,))
        buttons = [JobAction.REROLL]
        if job.kind is Kind.IMAGE:
            buttons.append(JobAction.ANIMATE)
            if spec is not None and "4k" in spec.qualities and job.quality != "4k":
                buttons.append(JobAction.UPSCALE)
        what = "video" if job.kind is Kind.VIDEO else "image"
        limit = int(job.origin.context.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        embed = discord.Embed(
            title=spec.name if spec else job.model, description=f"“{short_prompt(job.prompt)}”"
        )
        embed.set_footer(text=f"Asked by {job.origin.user_name or 'someone'}")
        uploads: list[tuple[Path, str]] = []
        notes: list[str] = []
        for f in files:
            size = f.size if f.size is not None else (f.path.stat().st_size if f.path else None)
            fits = size is not None and size <= limit and len(uploads) < MAX_FILES
            if links_only or f.path is None or not fits:
                notes.append(link_note(what, size, limit, f.url))
                continue
            uploads.append((f.path, f.filename))
            if f.mime.startswith("image/") and embed.image.url is None:
                embed.set_image(url=f"attachment://{f.filename}")
        return Rendered(job.id, "\n".join(notes) or None, embed, tuple(uploads), tuple(buttons))
