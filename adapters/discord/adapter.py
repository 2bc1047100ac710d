"""The Discord adapter: discord.py's client on the core's event loop, `/imagine` and `/video`,
and the buttons under a result that start a job (Reroll, Animate, 4K).

How a command is answered
    At once, within Discord's 3 seconds: an input error (checked from the options and the
    attachments' metadata, and by the core's `service.check`) with an ephemeral message,
    and nothing is recorded as work or sent upstream; anything else with a public deferred
    ("thinking") response whose message becomes the job's status message. Then the
    attachments are downloaded (size-capped) and decoded, which can take longer than those
    3 seconds: one that fails turns the thinking message into the refusal, recorded as a
    rejected job, before anything is sent upstream (its URL is what goes). A button press
    is answered the same way and starts a job owned by whoever pressed. The server's rules
    (limits, budgets, blocked words; scope: the guild) are checked before the defer and
    applied again, atomically, by `service.submit` after it: when someone else took the last
    slot meanwhile, the thinking message becomes the refusal, as it becomes the apology after
    an unexpected error. Once deferred, an answer is never deleted for an ephemeral followup
    (Discord can answer that followup with 10008 Unknown Message, discord-api-docs#2739).

What the status message shows
    A job waiting its turn: its place in line and a Cancel button (the core shows everyone
    waiting their new place whenever someone joins or leaves the line). A video held for
    confirmation: its cost and time with Confirm / Cancel, which only the asker can use
    (others are told so, privately). Then progress and the result, or why nothing was sent
    (cancelled, not confirmed in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import warnings
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.community import BUTTONS as COMMUNITY_BUTTONS
from adapters.discord.community import CommunityHandlers
from adapters.discord.parse import (
    PLATFORM,
    Choice,
    SlashRequest,
    downloaded,
    generation_request,
    model_choices,
    option_choices,
    origin_of,
    references,
    request_key,
    require_post_permission,
)
from adapters.discord.session_sink import DiscordSessionSink, EntrySink
from adapters.discord.sessions import BUTTONS as SESSION_BUTTONS
from adapters.discord.sessions import SessionHandlers
from adapters.discord.sink import (
    DISCORD_FAILURES,
    DiscordSink,
    apologise,
    defer_thinking,
    refuse,
    refuse_deferred,
)
from adapters.discord.slash import build_tree, pointed_at
from adapters.discord.texts import INTERNAL_ERROR_TEXT, OOPS_TEXT, models_text
from adapters.discord.ui import GenrelayClient, JobButton, hold_view
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError, PlatformUnavailable, RequestRejected
from bot.messages import confirm_text
from bot.models import GenerationRequest, Job, JobAction, JobState, Kind

__all__ = ["DiscordAdapter"]

log = logging.getLogger(__name__)

# Buttons under a result that start a job, and what the core calls them.
STARTS_JOB = {
    JobAction.REROLL: "reroll",
    JobAction.ANIMATE: "animate",
    JobAction.UPSCALE: "upscale",
}


class DiscordAdapter:
    """The Discord client with its commands and buttons; registers a `DiscordSink`.

    Knobs: `ready_timeout_s` (wait for the gateway's READY), `progress_timeout_s` (a
    progress edit is dropped after this), `delivery_timeout_s` (one delivery attempt),
    `max_ratelimit_timeout_s` (the longest 429 wait discord.py sleeps through; it raises
    beyond, and discord.py takes no less than 30), `guild_ready_timeout` (discord.py's wait
    for GUILD_CREATEs before READY).

    `client`: a `GenrelayClient` built outside (a test harness, other intents or a proxy)
    to use instead of building one; it must have no command tree yet. The adapter becomes
    its handler, adds the commands and buttons, logs it in, runs it and closes it at the
    end, as it does its own; `max_ratelimit_timeout_s` and `guild_ready_timeout` are then
    the client's own options.
    """

    platform = PLATFORM

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        ready_timeout_s: float = 30.0,
        progress_timeout_s: float = 2.0,
        delivery_timeout_s: float = 60.0,
        max_ratelimit_timeout_s: float = 30.0,
        guild_ready_timeout: float = 2.0,
        client: GenrelayClient | None = None,
    ) -> None:
        self.core = core
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.progress_timeout_s = progress_timeout_s
        self.delivery_timeout_s = delivery_timeout_s
        self.max_ratelimit_timeout_s = max_ratelimit_timeout_s
        self.guild_ready_timeout = guild_ready_timeout
        self._given_client = client
        self._stack = AsyncExitStack()
        self._runner: asyncio.Task[None] | None = None
        self._client: GenrelayClient | None = None
        self._sink: DiscordSink | None = None
        self._community: CommunityHandlers | None = None
        self._cards: DiscordSessionSink | None = None
        self._sessions: SessionHandlers | None = None
        self._ready = False  # READY came once: a later stop of the client is logged

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> GenrelayClient:
        if self._client is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._client

    @property
    def sink(self) -> DiscordSink:
        if self._sink is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._sink

    @property
    def community(self) -> CommunityHandlers:
        if self._community is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._community

    @property
    def cards(self) -> DiscordSessionSink:
        if self._cards is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._cards

    @property
    def sessions(self) -> SessionHandlers:
        if self._sessions is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._sessions

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.is_ready() and not client.is_closed()

    async def __aenter__(self) -> DiscordAdapter:
        token = self.settings.discord_bot_token
        if token is None or not token.get_secret_value():
            raise ConfigError("DISCORD_BOT_TOKEN is not set")
        try:
            await self._start(token.get_secret_value())
        except BaseException:
            await self._stop()
            raise
        self.core.notifier.register(self.sink)
        self.core.add_session_sink(self.cards)
        log.info("discord: connected as %s", self.client.user)
        return self

    def _make_client(self) -> GenrelayClient:
        client = self._given_client
        if client is None:
            return GenrelayClient(
                self,
                intents=discord.Intents.default(),
                guild_ready_timeout=self.guild_ready_timeout,
                max_ratelimit_timeout=self.max_ratelimit_timeout_s,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        client.handler = self
        return client

    async def _start(self, token: str) -> None:
        self._stack.enter_context(pointed_at(self.settings))
        client = self._client = self._make_client()
        self._sink = EntrySink(
            client,
            self.core.catalog,
            self.core.clock,
            progress_timeout_s=self.progress_timeout_s,
            delivery_timeout_s=self.delivery_timeout_s,
            fresh=self.core.service.get,
            entry_of=self.core.sessions.entry_for_job,
        )
        self._community = CommunityHandlers(self.core, self._sink)
        self._cards = DiscordSessionSink(
            client,
            self.core.clock,
            self.core.media.results_dir,
            timeout_s=self.delivery_timeout_s,
        )
        self._sessions = SessionHandlers(
            self.core, self._cards, show_started=self._show_started, apology=self._apology
        )
        build_tree(client)
        client.add_dynamic_items(JobButton)
        await self._stack.enter_async_context(client)
        self._runner = asyncio.create_task(client.start(token), name="discord-client")
        self._runner.add_done_callback(self._runner_done)
        ready = asyncio.create_task(client.wait_until_ready(), name="discord-ready")
        try:
            done, _ = await asyncio.wait(
                {ready, self._runner},
                timeout=self.ready_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if ready in done:
            self._ready = True
            return
        if self._runner in done:
            exc = self._runner.exception()
            if isinstance(exc, discord.LoginFailure):
                raise ConfigError("Discord refused DISCORD_BOT_TOKEN") from None
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "it stopped"
            raise PlatformUnavailable(f"Discord could not be reached ({why})")
        raise PlatformUnavailable(f"Discord was not ready within {self.ready_timeout_s:g} s")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        # Before READY, _start turns the failure into the start's one error.
        if self._ready and not task.cancelled() and task.exception() is not None:
            log.error("discord: the client stopped: %r", task.exception())

    async def stop_intake(self) -> None:
        """Shutting down: nothing to pause. Discord never sends an interaction again, so
        one that comes during the grace is still answered and recorded; the tracker takes
        nothing new meanwhile, and the next process submits it."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.core.notifier.unregister(PLATFORM)
        self.core.remove_session_sink(PLATFORM)
        await self._stop()

    async def _stop(self) -> None:
        if self._sessions is not None:
            await self._sessions.aclose()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._stack.aclose()
        self._client = self._sink = self._community = None
        self._cards = self._sessions = None

    # -- what the commands' options offer ----------------------------------------------------

    def models_text(self) -> str:
        return models_text(self.core.catalog)

    def model_choices(self, kind: Kind, current: str) -> list[Choice]:
        return model_choices(self.core.catalog, kind, current)

    def option_choices(
        self, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
    ) -> list[Choice]:
        return option_choices(self.core.catalog, interaction, kind, field, current)

    # -- /imagine and /video -----------------------------------------------------------------

    async def on_generate(
        self, interaction: discord.Interaction[Any], command: SlashRequest
    ) -> None:
        try:
            await self._generate(interaction, command)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await apologise(interaction, await self._apology(interaction))

    async def _generate(self, interaction: discord.Interaction[Any], command: SlashRequest) -> None:
        received_at = self.core.clock.now()
        media = self.core.media
        try:
            require_post_permission(interaction)
            images = references(
                command.attachments, self.settings.max_reference_bytes, media.too_large
            )
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        origin = origin_of(interaction, None, received_at)
        request = generation_request(command, interaction, origin, images)
        # Every refusal that needs no upstream call (the catalog, the chat's rules, its
        # limits) comes before the public "thinking…", so it is the private first answer:
        # withdrawing a deferred reply afterwards can meet 10008 Unknown Message.
        try:
            await self.core.service.precheck(request)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            await self.core.service.record_rejected(request, exc)
            return
        message_id = await defer_thinking(interaction)
        request = dataclasses.replace(
            request, origin=origin_of(interaction, message_id, received_at)
        )
        if request.images:
            # Downloaded and decoded only now: that can take longer than Discord's 3 s.
            try:
                images = await downloaded(request.images, self.core.media, self.core.http)
            except RequestRejected as exc:
                await self.core.service.record_rejected(request, exc)
                await refuse_deferred(interaction, exc)
                return
            request = dataclasses.replace(request, images=images)
        job = await self._submit(interaction, request, message_id)
        if job is None:
            return
        log.info(
            "job %s: discord interaction %s in channel %s",
            job.id,
            interaction.id,
            job.origin.chat_id,
        )
        await self._show_started(interaction, job)

    # -- buttons -----------------------------------------------------------------------------

    async def on_button(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str
    ) -> None:
        try:
            if action in COMMUNITY_BUTTONS:
                await self.community.button(interaction, action, job_id)
            elif action in SESSION_BUTTONS:
                await self.sessions.button(interaction, action, job_id)
            else:
                await self._button(interaction, action, job_id)
        except Exception:
            log.exception("discord: button %s on job %s failed", action, job_id)
            # Reroll, Animate and 4K start a job; Confirm, Cancel and Send again do not.
            starts = action in STARTS_JOB
            text = await self._apology(interaction) if starts else OOPS_TEXT
            await apologise(interaction, text)

    async def _button(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str
    ) -> None:
        """Reroll, Animate or 4K: a new job, owned by whoever pressed."""
        received_at = self.core.clock.now()
        service = self.core.service
        request: GenerationRequest | None = None
        try:  # as for /imagine: a refusal is the private first answer, before any defer
            require_post_permission(interaction)
            request = await service.action_request(
                STARTS_JOB[action],
                job_id,
                origin_of(interaction, None, received_at),
                request_key=request_key(interaction),
            )
            await service.precheck(request)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            if request is not None:
                await service.record_rejected(request, exc)
            return
        message_id = await defer_thinking(interaction)
        origin = origin_of(interaction, message_id, received_at)
        request = dataclasses.replace(request, origin=origin)
        job = await self._submit(interaction, request, message_id)
        if job is None:
            return
        log.info("job %s: %s of job %s pressed by user %s", job.id, action, job_id, origin.user_id)
        try:
            await service.attach_status_message(job.id, str(message_id))
        except Exception:  # the job is recorded and goes on; its progress finds no message
            log.exception("job %s: status message id not stored", job.id)
        job.status_message_id = str(message_id)
        await self._show_started(interaction, job)

    # -- a new job ---------------------------------------------------------------------------

    async def _submit(
        self, interaction: discord.Interaction[Any], request: GenerationRequest, message_id: int
    ) -> Job | None:
        """Record the job (after the public defer); None when the server's rules refused it
        now, though the precheck passed: another request took the last slot meanwhile. The
        core records the refusal; the thinking message becomes it."""
        try:
            return await self.core.service.submit(request, status_message_id=str(message_id))
        except RequestRejected as exc:
            await refuse_deferred(interaction, exc)
            return None

    async def _show_started(self, interaction: discord.Interaction[Any], job: Job) -> None:
        """After the job is recorded nothing may say it was not made: a failure to show its
        first status is logged, and the job goes on (its result still comes)."""
        try:
            await self._started(interaction, job)
        except Exception:
            log.exception("job %s: first status not shown; the job goes on", job.id)

    async def _started(self, interaction: discord.Interaction[Any], job: Job) -> None:
        """A new job's first status: its cost with Confirm / Cancel when it is held, else its
        place in line or progress."""
        if job.hold is not None:
            text = confirm_text(job, self.core.catalog, self.core.settings.confirm_timeout_s)
            try:
                await interaction.edit_original_response(content=text, view=hold_view(job.id))
            except DISCORD_FAILURES as exc:
                # Nobody could confirm it: rather than leave it waiting for a button nobody
                # sees, end it now; its delivery tells the asker nothing was sent.
                log.warning("job %s: confirmation not shown (%r); cancelling it", job.id, exc)
                await self.core.service.cancel(job.id, job.origin)
                self.core.notifier.wake()
                return
            log.info("job %s: waiting for its asker's confirmation", job.id)
            return
        await self.sink.progress(job)

    async def _apology(self, interaction: discord.Interaction[Any]) -> str | None:
        """What to say after an unexpected failure of a request that starts a job: "nothing
        was started" only when the core holds no job for it; nothing when it does (its
        first status is shown as usual and its result still comes); when that cannot be
        told, words that claim neither."""
        try:
            job = await self.core.service.find_request(request_key(interaction))
        except Exception:
            log.exception("discord: interaction %s: job lookup failed", interaction.id)
            return OOPS_TEXT
        if job is None or job.state is JobState.REJECTED:
            return INTERNAL_ERROR_TEXT
        log.info("job %s: recorded before the failure; it goes on", job.id)
        if interaction.response.is_done():
            await self._show_started(interaction, job)
        return None
