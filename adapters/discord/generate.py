"""/imagine and /video on Discord, and the buttons under a result that start a job (Reroll,
Animate, 4K, and a session entry's Remix once its modal gave the prompt): checked, answered,
the attachments fetched, submitted, and the job's first status shown. The twin of
telegram/generate.py.

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

import dataclasses
import logging
import warnings
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.answers import defer_thinking, refuse, refuse_deferred
from adapters.discord.parse import (
    SlashRequest,
    downloaded,
    generation_request,
    origin_of,
    references,
    request_key,
    require_post_permission,
)
from adapters.discord.sink import DISCORD_FAILURES, DiscordSink
from adapters.discord.texts import INTERNAL_ERROR_TEXT, OOPS_TEXT
from adapters.discord.ui import hold_view
from bot.app import Core
from bot.config import Settings
from bot.errors import RequestRejected
from bot.messages import confirm_text
from bot.models import GenerationRequest, Job, JobAction, JobState

__all__ = ["STARTS_JOB", "GenerateHandlers"]

log = logging.getLogger(__name__)

# Buttons under a result that start a job, and what the core calls them.
STARTS_JOB = {
    JobAction.REROLL: "reroll",
    JobAction.ANIMATE: "animate",
    JobAction.UPSCALE: "upscale",
}


class GenerateHandlers:
    """The requests that start a job."""

    def __init__(self, core: Core, settings: Settings, sink: DiscordSink) -> None:
        self.core = core
        self.settings = settings
        self.sink = sink

    # -- /imagine and /video -----------------------------------------------------------------

    async def command(self, interaction: discord.Interaction[Any], command: SlashRequest) -> None:
        """/imagine or /video: a job, or a refusal as the interaction's answer."""
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
        if request.images:
            message_id = await defer_thinking(interaction)
            request = dataclasses.replace(
                request, origin=origin_of(interaction, message_id, received_at)
            )
            # Downloaded and decoded only now: that can take longer than Discord's 3 s.
            try:
                images = await downloaded(request.images, self.core.media, self.core.http)
            except RequestRejected as exc:
                await self.core.service.record_rejected(request, exc)
                await refuse_deferred(interaction, exc)
                return
            request = dataclasses.replace(request, images=images)
            job = await self._submit(interaction, request, message_id)
        else:
            job = await self._record_then_defer(interaction, request)
        if job is None:
            return
        log.info(
            "job %s: discord interaction %s in channel %s",
            job.id,
            interaction.id,
            job.origin.chat_id,
        )
        await self._show_started(interaction, job)

    # -- Reroll, Animate, 4K ----------------------------------------------------------------

    async def button(
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
        job = await self._record_then_defer(interaction, request)
        if job is None:
            return
        log.info(
            "job %s: %s of job %s pressed by user %s", job.id, action, job_id, job.origin.user_id
        )
        await self._show_started(interaction, job)

    async def remix(self, interaction: discord.Interaction[Any], job_id: str, prompt: str) -> None:
        """A remix (the Remix modal submitted): a new image from the job's and `prompt`,
        owned by whoever asked; answered as a button press is."""
        received_at = self.core.clock.now()
        service = self.core.service
        request: GenerationRequest | None = None
        try:
            require_post_permission(interaction)
            request = await service.remix_request(
                job_id,
                prompt,
                origin_of(interaction, None, received_at),
                request_key=request_key(interaction),
            )
            await service.precheck(request)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            if request is not None:
                await service.record_rejected(request, exc)
            return
        job = await self._record_then_defer(interaction, request)
        if job is None:
            return
        log.info("job %s: remix of job %s by user %s", job.id, job_id, job.origin.user_id)
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

    async def _record_then_defer(
        self, interaction: discord.Interaction[Any], request: GenerationRequest
    ) -> Job | None:
        """Record the job, then answer with the public "thinking…" that becomes its status
        message. A replica killed in between leaves a job that goes on (its result is posted
        in the channel, mentioning the asker), never a "thinking…" nobody will answer. None
        when the server's rules refused it now, though the precheck passed (another request
        took the last slot meanwhile): the refusal is the private first answer."""
        try:
            job = await self.core.service.submit(request, status_message_id=None)
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return None
        message_id = await defer_thinking(interaction)
        try:
            await self.core.service.attach_status_message(job.id, str(message_id))
        except Exception:  # the job is recorded and goes on; its progress finds no message
            log.exception("job %s: status message id not stored", job.id)
        job.status_message_id = str(message_id)
        return job

    async def _show_started(self, interaction: discord.Interaction[Any], job: Job) -> None:
        """After the job is recorded nothing may say it was not made: a failure to show its
        first status is logged, and the job goes on (its result still comes)."""
        try:
            await self._started(interaction, job)
        except Exception:
            log.exception("job %s: first status not shown; the job goes on", job.id)
        if job.state is JobState.RECEIVED and job.hold is None:
            # Its place was counted when it was recorded; the line may have moved since
            # (that refresh found no status message yet): every place is shown anew.
            self.core.service.on_line_changed(job.origin.platform, job.origin.scope_id)

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

    async def apology(self, interaction: discord.Interaction[Any]) -> str | None:
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
