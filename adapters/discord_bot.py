"""Discord: `/imagine`, `/video`, `/models`, `/help`, and for shared servers `/settings show|set`,
`/history`, `/usage` and `/cancel`; live progress, results with buttons that survive
restarts. `DiscordAdapter` runs the client and answers interactions;
`adapters/discord/sink.py` shows progress and delivers; `sync_commands` registers the
commands (`genrelay discord sync [--guild ID]`), which serving never does.

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

Private answers
    `/settings`, `/history`, `/usage`, `/cancel` and every refusal are ephemeral. Send again
    (under /history) answers with the result privately, to whoever asked for the history.
    Admin means Manage Server in that server (operator ids from the configuration too; the
    core checks those); in DMs only operators are admins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mimetypes
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from types import TracebackType
from typing import Any

import aiohttp

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

from adapters.discord.constants import (
    DEFAULT_UPLOAD_LIMIT,
    HISTORY_LENGTH,
    IMAGE_TYPES,
    MAX_CHOICE_NAME,
    MAX_CHOICES,
    MAX_CONTENT,
    PLATFORM,
)
from adapters.discord.sink import (
    DISCORD_FAILURES,
    DiscordSink,
    Rendered,
    is_too_large,
    waiting_view,
)
from adapters.discord.ui import (
    Choice,
    GenrelayClient,
    JobButton,
    SlashRequest,
    build_tree,
    is_thread,
    pointed_at,
)
from adapters.discord.words import (
    INTERNAL_ERROR_TEXT,
    OOPS_TEXT,
    RESULT_UNAVAILABLE_TEXT,
    attachment_unreachable_text,
    missing_permissions_text,
    not_an_image_text,
    send_again_label,
    settings_text,
)
from bot.app import Core
from bot.catalog import ModelSpec
from bot.config import Settings
from bot.errors import ConfigError, MediaError, PlatformUnavailable, RequestRejected
from bot.messages import (
    cancel_text,
    chat_usage_text,
    confirm_text,
    history_text,
    model_line,
    progress_text,
    setting_changed_text,
    usage_text,
)
from bot.models import GenerationRequest, Job, JobState, Kind, Origin, ReferenceImage
from bot.outcomes import Cancelled

__all__ = ["DiscordAdapter", "sync_commands"]

log = logging.getLogger(__name__)


# Channels whose permissions discord.py can compute from its cache.
GUILD_CHANNELS = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel, discord.Thread)


def _blank(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


class DiscordAdapter:
    """The Discord client with its commands and buttons; registers a `DiscordSink`.

    Knobs: `ready_timeout_s` (wait for the gateway's READY), `progress_timeout_s` (a
    progress edit is dropped after this), `delivery_timeout_s` (one delivery attempt),
    `max_ratelimit_timeout_s` (the longest 429 wait discord.py sleeps through; it raises
    beyond, and discord.py takes no less than 30), `guild_ready_timeout` (discord.py's wait
    for GUILD_CREATEs before READY).
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
    ) -> None:
        self.core = core
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.progress_timeout_s = progress_timeout_s
        self.delivery_timeout_s = delivery_timeout_s
        self.max_ratelimit_timeout_s = max_ratelimit_timeout_s
        self.guild_ready_timeout = guild_ready_timeout
        self._stack = AsyncExitStack()
        self._runner: asyncio.Task[None] | None = None
        self._client: GenrelayClient | None = None
        self._sink: DiscordSink | None = None
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
        log.info("discord: connected as %s", self.client.user)
        return self

    async def _start(self, token: str) -> None:
        self._stack.enter_context(pointed_at(self.settings))
        client = GenrelayClient(
            self,
            intents=discord.Intents.default(),
            guild_ready_timeout=self.guild_ready_timeout,
            max_ratelimit_timeout=self.max_ratelimit_timeout_s,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self._client = client
        self._sink = DiscordSink(
            client,
            self.core.catalog,
            self.core.clock,
            progress_timeout_s=self.progress_timeout_s,
            delivery_timeout_s=self.delivery_timeout_s,
            fresh=self.core.service.get,
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
        await self._stop()

    async def _stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._stack.aclose()
        self._client = self._sink = None

    # -- words built from the catalog --------------------------------------------------------

    def models_text(self) -> str:
        parts = []
        for kind, title in (
            (Kind.IMAGE, "Image models · /imagine"),
            (Kind.VIDEO, "Video models · /video"),
        ):
            lines = [model_line(spec) for spec in self.core.catalog.all(kind)]
            parts.append(f"**{title}**\n" + "\n".join(lines))
        return "\n\n".join(parts)[:MAX_CONTENT]

    def model_choices(self, kind: Kind, current: str) -> list[Choice]:
        needle = current.strip().lower()
        out = []
        for spec in self.core.catalog.all(kind):
            label = f"{spec.name} — {spec.description}"
            if needle and needle not in spec.code.lower() and needle not in label.lower():
                continue
            out.append(app_commands.Choice(name=label[:MAX_CHOICE_NAME], value=spec.code))
        return out[:MAX_CHOICES]

    def option_choices(
        self, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
    ) -> list[Choice]:
        """Aspect ratios or qualities of the model chosen so far (or of the default model)."""
        chosen = getattr(interaction.namespace, "model", None)
        spec = self.core.catalog.resolve(chosen) if isinstance(chosen, str) and chosen else None
        specs: list[ModelSpec]
        if spec is not None and spec.kind is kind:
            specs = [spec]
        elif chosen:
            specs = self.core.catalog.all(kind)
        else:
            specs = [self.core.catalog.default_for(kind)]
        values: list[str] = []
        for s in specs:
            values += [v for v in getattr(s, field) if v not in values]
        needle = current.strip().lower()
        return [app_commands.Choice(name=v, value=v) for v in values if needle in v][:MAX_CHOICES]

    # -- commands ----------------------------------------------------------------------------

    async def on_generate(
        self, interaction: discord.Interaction[Any], command: SlashRequest
    ) -> None:
        try:
            await self._generate(interaction, command)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await self._apologise(interaction, await self._apology(interaction))

    async def _generate(self, interaction: discord.Interaction[Any], command: SlashRequest) -> None:
        received_at = self.core.clock.now()
        try:
            self._require_post_permission(interaction)
            images = self._references(command.attachments)
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            return
        request = GenerationRequest(
            kind=command.kind,
            prompt=command.prompt,
            origin=self._origin(interaction, None, received_at),
            model=_blank(command.model),
            images=images,
            aspect_ratio=_blank(command.aspect_ratio),
            quality=_blank(command.quality),
            request_key=request_key(interaction),
        )
        # Every refusal that needs no upstream call (the catalog, the chat's rules, its
        # limits) comes before the public "thinking…", so it is the private first answer:
        # withdrawing a deferred reply afterwards can meet 10008 Unknown Message.
        try:
            await self.core.service.precheck(request)
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            await self.core.service.record_rejected(request, exc)
            return
        message_id = await self._defer(interaction)
        request = dataclasses.replace(
            request, origin=self._origin(interaction, message_id, received_at)
        )
        if request.images:
            # Downloaded and decoded only now: that can take longer than Discord's 3 s.
            try:
                images = await self._downloaded(request.images)
            except RequestRejected as exc:
                await self.core.service.record_rejected(request, exc)
                await self._refuse_deferred(interaction, exc)
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

    async def on_button(
        self, interaction: discord.Interaction[Any], action: str, job_id: str
    ) -> None:
        try:
            await self._button(interaction, action, job_id)
        except Exception:
            log.exception("discord: button %s on job %s failed", action, job_id)
            # Reroll, Animate and 4K start a job; Confirm, Cancel and Send again do not.
            starts = action in _BUTTON_ACTIONS
            text = await self._apology(interaction) if starts else OOPS_TEXT
            await self._apologise(interaction, text)

    async def _button(
        self, interaction: discord.Interaction[Any], action: str, job_id: str
    ) -> None:
        if action == "cf":
            await self._confirm(interaction, job_id)
            return
        if action == "cx":
            await self._cancel_job(interaction, job_id)
            return
        if action == "sa":
            await self._send_again(interaction, job_id)
            return
        received_at = self.core.clock.now()
        service = self.core.service
        request: GenerationRequest | None = None
        try:  # as for /imagine: a refusal is the private first answer, before any defer
            self._require_post_permission(interaction)
            request = await service.action_request(
                _BUTTON_ACTIONS[action],
                job_id,
                self._origin(interaction, None, received_at),
                request_key=request_key(interaction),
            )
            await service.precheck(request)
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            if request is not None:
                await service.record_rejected(request, exc)
            return
        message_id = await self._defer(interaction)
        origin = self._origin(interaction, message_id, received_at)
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

    async def _show_started(self, interaction: discord.Interaction[Any], job: Job) -> None:
        """After the job is recorded nothing may say it was not made: a failure to show its
        first status is logged, and the job goes on (its result still comes)."""
        try:
            await self._started(interaction, job)
        except Exception:
            log.exception("job %s: first status not shown; the job goes on", job.id)

    # -- waiting: the line, confirmation, cancel ---------------------------------------------

    async def _started(self, interaction: discord.Interaction[Any], job: Job) -> None:
        """A new job's first status: its cost with Confirm / Cancel when it is held, else its
        place in line or progress."""
        if job.hold is not None:
            text = confirm_text(job, self.core.catalog, self.core.settings.confirm_timeout_s)
            try:
                await interaction.edit_original_response(content=text, view=_hold_view(job.id))
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

    async def _confirm(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            job = await self.core.service.confirm(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            return
        if self.sink.can_edit(job):
            await interaction.response.defer()  # the sink edits the status message
            await self.sink.progress(job)
        else:  # the request's interaction is too old to edit through: edit via this press
            await interaction.response.edit_message(
                content=self._progress(job), view=waiting_view(job)
            )

    async def _cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            outcome = await self.core.service.cancel(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            return
        if not isinstance(outcome, Cancelled):  # sent or finished: only the presser is told
            await interaction.response.send_message(cancel_text(outcome), ephemeral=True)
            return
        await interaction.response.defer()  # the delivery says it was cancelled

    def _progress(self, job: Job) -> str:
        return progress_text(job, self.core.catalog)

    # -- history: send a result again --------------------------------------------------------

    async def _send_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            job = await self.core.service.stored_result(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await self._refuse(interaction, exc)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            files = await self.core.notifier.fetch_results(job)
        except MediaError as exc:
            log.info("job %s: result not fetched again (%s)", job.id, exc)
            await interaction.edit_original_response(content=RESULT_UNAVAILABLE_TEXT)
            return
        try:
            await self._show_result(interaction, self.sink.render(job, files))
        except discord.HTTPException as exc:
            if not is_too_large(exc):
                raise
            await self._show_result(interaction, self.sink.render(job, files, links_only=True))
        log.info("job %s: result sent again to user %s", job.id, interaction.user.id)

    async def _show_result(self, interaction: discord.Interaction[Any], result: Rendered) -> None:
        options: dict[str, Any] = {"content": result.content, "embed": result.embed}
        view = result.view()
        if view is not None:
            options["view"] = view
        with ExitStack() as stack:
            await interaction.edit_original_response(attachments=result.files(stack), **options)

    # -- settings, history, usage, cancel ----------------------------------------------------

    async def on_settings_show(self, interaction: discord.Interaction[Any]) -> None:
        async def show(origin: Origin) -> str:
            return settings_text(await self.core.service.rules(origin))

        await self._answer(interaction, show)

    async def on_settings_set(
        self, interaction: discord.Interaction[Any], name: str, value: str
    ) -> None:
        admin = _is_admin(interaction)

        async def change(origin: Origin) -> str:
            changed = await self.core.service.change_setting(origin, name, value, is_admin=admin)
            return setting_changed_text(changed)

        await self._answer(interaction, change)

    async def on_usage(self, interaction: discord.Interaction[Any], scope: str) -> None:
        admin = _is_admin(interaction)

        async def usage(origin: Origin) -> str:
            if scope == "chat":
                return chat_usage_text(await self.core.service.chat_usage(origin, is_admin=admin))
            return usage_text(await self.core.service.usage(origin))

        await self._answer(interaction, usage)

    async def on_cancel(self, interaction: discord.Interaction[Any]) -> None:
        async def cancel(origin: Origin) -> str:
            return cancel_text(await self.core.service.cancel_latest(origin))

        await self._answer(interaction, cancel)

    async def on_history(self, interaction: discord.Interaction[Any]) -> None:
        try:
            origin = self._origin(interaction, None, self.core.clock.now())
            jobs = await self.core.service.history(origin, HISTORY_LENGTH)
            text = history_text(jobs, self.core.catalog, self.core.clock.now())
            options: dict[str, Any] = {}
            view = _history_view(jobs)
            if view is not None:
                options["view"] = view
            await interaction.response.send_message(text[:MAX_CONTENT], ephemeral=True, **options)
        except Exception:
            log.exception("discord: /history %s failed", interaction.id)
            await self._apologise(interaction, OOPS_TEXT)

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        make: Callable[[Origin], Awaitable[str]],
    ) -> None:
        """Answer a command privately with what the core says (or its refusal)."""
        try:
            origin = self._origin(interaction, None, self.core.clock.now())
            try:
                text = await make(origin)
            except RequestRejected as exc:
                await self._refuse(interaction, exc)
                return
            await interaction.response.send_message(text[:MAX_CONTENT], ephemeral=True)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await self._apologise(interaction, OOPS_TEXT)

    def setting_value_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice]:
        """Values for /settings set: models by kind, on/off, all, none (numbers are typed)."""
        name = getattr(interaction.namespace, "name", None)
        catalog = self.core.catalog
        head, comma, last = current.rpartition(",")
        prefix = ""
        if name in ("image_model", "video_model"):
            kind = Kind.IMAGE if name == "image_model" else Kind.VIDEO
            values = [spec.code for spec in catalog.all(kind)]
        elif name == "allowed_models":  # a comma list: complete its last item
            taken = {part.strip() for part in head.split(",")}
            values = [spec.code for spec in catalog if spec.code not in taken]
            if comma:
                prefix = head.strip() + ", "
            else:
                values.insert(0, "all")
        elif name == "video_confirm":
            values = ["on", "off"]
        elif name == "blocked_words" and not comma:
            values = ["none"]
        else:
            values = []
        needle = (last if name == "allowed_models" else current).strip().lower()
        out = [prefix + v for v in values if needle in v.lower()]
        return [app_commands.Choice(name=v[:MAX_CHOICE_NAME], value=v) for v in out][:MAX_CHOICES]

    def _require_post_permission(self, interaction: discord.Interaction[Any]) -> None:
        """Refuse at submit time what would fail at delivery (after 15 minutes we post)."""
        if interaction.guild_id is None:
            return
        perms = interaction.app_permissions
        if perms.value == 0:  # not in the payload: ask the cache
            guild, channel = interaction.guild, interaction.channel
            if guild is None or guild.me is None or not isinstance(channel, GUILD_CHANNELS):
                return  # cannot tell; delivery reports a missing permission if it comes to it
            perms = channel.permissions_for(guild.me)
        thread = is_thread(interaction.channel)
        needed = (
            ("View Channel", perms.view_channel),
            (
                "Send Messages in Threads" if thread else "Send Messages",
                perms.send_messages_in_threads if thread else perms.send_messages,
            ),
            ("Attach Files", perms.attach_files),
            ("Embed Links", perms.embed_links),
            ("Read Message History", perms.read_message_history),
        )
        missing = [name for name, ok in needed if not ok]
        if missing:
            raise RequestRejected(missing_permissions_text(missing), code="discord_permissions")

    def _references(
        self, attachments: Sequence[discord.Attachment | None]
    ) -> tuple[ReferenceImage, ...]:
        """Attachments as reference images, checked from their metadata (no download: that
        comes after the defer, in `_downloaded`)."""
        out = []
        for att in attachments:
            if att is None:
                continue
            mime = (att.content_type or mimetypes.guess_type(att.filename)[0] or "").split(";")[0]
            if mime.strip().lower() not in IMAGE_TYPES:
                raise RequestRejected(not_an_image_text(att.filename), code="not_an_image")
            if att.size > self.settings.max_reference_bytes:
                raise self.core.media.too_large(att.size)
            out.append(ReferenceImage(ref=att.url, mime=mime, size=att.size, filename=att.filename))
        return tuple(out)

    async def _downloaded(self, images: Sequence[ReferenceImage]) -> tuple[ReferenceImage, ...]:
        """Each attachment downloaded (size-capped) and decoded, so nothing corrupt is paid
        for; its CDN URL (no secret in it) still goes upstream. Raises RequestRejected."""

        async def one(image: ReferenceImage) -> ReferenceImage:
            try:
                return await self.core.media.check_remote(
                    self.core.http, image.ref, filename=image.filename
                )
            except MediaError as exc:
                log.info("discord: attachment %s not downloaded (%s)", image.filename, exc)
                raise RequestRejected(
                    attachment_unreachable_text(image.filename), code="image_fetch"
                ) from None

        return tuple(await asyncio.gather(*(one(image) for image in images)))

    def _presser(self, interaction: discord.Interaction[Any]) -> Origin:
        """Who pressed a button, and where: what the core checks a job against."""
        return self._origin(interaction, None, self.core.clock.now())

    def _origin(
        self, interaction: discord.Interaction[Any], message_id: int | None, received_at: float
    ) -> Origin:
        channel_id = str(interaction.channel_id)
        return Origin(
            platform=PLATFORM,
            chat_id=channel_id,
            user_id=str(interaction.user.id),
            user_name=interaction.user.display_name,
            thread_id=channel_id if is_thread(interaction.channel) else None,
            message_id=str(message_id) if message_id is not None else None,
            guild_id=str(interaction.guild_id) if interaction.guild_id else None,
            context={
                "application_id": str(interaction.application_id),
                "token": interaction.token,
                # When the 15 minutes of the interaction token started, by our clock.
                "received_at": received_at,
                "upload_limit": int(interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT),
            },
        )

    async def _defer(self, interaction: discord.Interaction[Any]) -> int:
        """A public "thinking" response; its message becomes the status message."""
        sent = await interaction.response.defer(thinking=True)
        if sent is not None and sent.message_id is not None:
            return sent.message_id
        return (await interaction.original_response()).id

    async def _refuse(self, interaction: discord.Interaction[Any], exc: RequestRejected) -> None:
        log.info("discord: interaction %s refused (%s)", interaction.id, exc.code)
        await interaction.response.send_message(exc.message, ephemeral=True)

    async def _refuse_deferred(
        self, interaction: discord.Interaction[Any], exc: RequestRejected
    ) -> None:
        """A refusal after the public defer: the "thinking…" message becomes it (deleting it
        for an ephemeral followup can meet 10008 Unknown Message)."""
        log.info("discord: interaction %s refused after the defer (%s)", interaction.id, exc.code)
        await interaction.edit_original_response(content=exc.message)

    async def _submit(
        self, interaction: discord.Interaction[Any], request: GenerationRequest, message_id: int
    ) -> Job | None:
        """Record the job (after the public defer); None when the server's rules refused it
        now, though the precheck passed: another request took the last slot meanwhile. The
        core records the refusal; the thinking message becomes it."""
        try:
            return await self.core.service.submit(request, status_message_id=str(message_id))
        except RequestRejected as exc:
            await self._refuse_deferred(interaction, exc)
            return None

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

    async def _apologise(self, interaction: discord.Interaction[Any], text: str | None) -> None:
        """Say `text` in the interaction's own answer: the first response (ephemeral), or
        the deferred "thinking…" message turned into it. Never a DELETE of that message for
        an ephemeral followup (10008 Unknown Message). After a deferred button update, whose
        original is the message under the button (a job's status), a private followup, that
        message left as it is; an answer already given stands."""
        if text is None:
            return
        response = interaction.response
        with contextlib.suppress(*DISCORD_FAILURES):
            if not response.is_done():
                await response.send_message(text, ephemeral=True)
            elif response.type is discord.InteractionResponseType.deferred_channel_message:
                await interaction.edit_original_response(content=text)
            elif response.type is discord.InteractionResponseType.deferred_message_update:
                await interaction.followup.send(text, ephemeral=True)
            else:
                log.info("discord: interaction %s already answered; no apology", interaction.id)


# Buttons under a result that start a job, and what the core calls them.
_BUTTON_ACTIONS = {"rr": "reroll", "an": "animate", "4k": "upscale"}


def request_key(interaction: discord.Interaction[Any]) -> str:
    """The core's idempotency key of a command or button press: its interaction."""
    return f"{PLATFORM}:{interaction.id}"


def _is_admin(interaction: discord.Interaction[Any]) -> bool:
    """A server admin: Manage Server there. In DMs nobody is (operators still are: the core
    checks them), or anyone could lift their own limits."""
    return interaction.guild_id is not None and interaction.permissions.manage_guild


def _hold_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cf", job_id))
    view.add_item(JobButton("cx", job_id))
    return view


def _history_view(jobs: Sequence[Job]) -> discord.ui.View | None:
    """Send again under /history, one per job with a result, numbered like its line."""
    view = discord.ui.View(timeout=None)
    for place, job in enumerate(jobs, start=1):
        if job.state is JobState.SUCCEEDED:
            view.add_item(JobButton("sa", job.id, label=send_again_label(place)))
    return view if view.children else None


# -- `genrelay discord sync` -----------------------------------------------------------------


async def sync_commands(settings: Settings, *, guild_id: int | None) -> int:
    """Register the slash commands with Discord: in one server (instant) or globally."""
    token = settings.discord_bot_token
    if token is None or not token.get_secret_value():
        print(
            "genrelay: DISCORD_BOT_TOKEN is not set, so there is nothing to sync.", file=sys.stderr
        )
        return 2
    with pointed_at(settings):
        client = GenrelayClient(None, intents=discord.Intents.default())
        tree = build_tree(client)
        guild = discord.Object(guild_id) if guild_id is not None else None
        if guild is not None:
            tree.copy_global_to(guild=guild)
        try:
            async with client:
                await client.login(token.get_secret_value())
                synced = await tree.sync(guild=guild)
        except discord.LoginFailure:
            print("genrelay: Discord refused DISCORD_BOT_TOKEN.", file=sys.stderr)
            return 2
        except discord.Forbidden as exc:
            where = f"server {guild_id}" if guild_id is not None else "this application"
            print(
                f"genrelay: Discord would not register the commands in {where} ({exc.text}). "
                "Invite the bot there with the applications.commands scope.",
                file=sys.stderr,
            )
            return 1
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            print(f"genrelay: syncing the commands failed: {exc}", file=sys.stderr)
            return 1
    names = ", ".join(f"/{c.name}" for c in synced)
    if guild_id is not None:
        print(f"Synced {len(synced)} commands to server {guild_id}: {names}")
    else:
        print(f"Synced {len(synced)} global commands: {names} (Discord may take up to an hour)")
    return 0
