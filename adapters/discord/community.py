"""Shared servers on Discord: /settings show|set, /history, /usage and /cancel, and the
Confirm, Cancel and Send again buttons. The rules and their words are the core's; this only
asks and shows. The twin of telegram/community.py.

Private answers
    `/settings`, `/history`, `/usage`, `/cancel` and every refusal are ephemeral. Send again
    (under /history) answers with the result privately, to whoever asked for the history.
    Admin means Manage Server in that server (operator ids from the configuration too; the
    core checks those); in DMs only operators are admins.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

from adapters.discord.answers import apologise, refuse
from adapters.discord.parse import MAX_CHOICE_NAME, MAX_CHOICES, Choice, is_admin, origin_of
from adapters.discord.sink import DiscordSink, Rendered, is_too_large
from adapters.discord.texts import (
    MAX_CONTENT,
    OOPS_TEXT,
    RESULT_UNAVAILABLE_TEXT,
    settings_text,
)
from adapters.discord.ui import history_view, waiting_view
from bot.app import Core
from bot.community import SESSION_STARTERS
from bot.errors import MediaError, RequestRejected
from bot.messages import (
    cancel_text,
    chat_usage_text,
    history_text,
    progress_text,
    setting_changed_text,
    usage_text,
)
from bot.models import JobAction, Kind, Origin
from bot.outcomes import Cancelled

__all__ = ["BUTTONS", "HISTORY_LENGTH", "CommunityHandlers"]

log = logging.getLogger(__name__)

BUTTONS = frozenset({JobAction.CONFIRM, JobAction.CANCEL, JobAction.SEND_AGAIN})
HISTORY_LENGTH = 10  # jobs /history lists, each with at most one button (Discord allows 25)


class CommunityHandlers:
    """The community commands and buttons of one DiscordAdapter."""

    def __init__(self, core: Core, sink: DiscordSink) -> None:
        self.core = core
        self.sink = sink

    def _presser(self, interaction: discord.Interaction[Any]) -> Origin:
        """Who asked or pressed, and where: what the core checks a job against."""
        return origin_of(interaction, None, self.core.clock.now())

    # -- commands ----------------------------------------------------------------------------

    async def on_settings_show(self, interaction: discord.Interaction[Any]) -> None:
        async def show(origin: Origin) -> str:
            return settings_text(await self.core.service.rules(origin))

        await self._answer(interaction, show)

    async def on_settings_set(
        self, interaction: discord.Interaction[Any], name: str, value: str
    ) -> None:
        admin = is_admin(interaction)

        async def change(origin: Origin) -> str:
            changed = await self.core.service.change_setting(origin, name, value, is_admin=admin)
            return setting_changed_text(changed)

        await self._answer(interaction, change)

    async def on_usage(self, interaction: discord.Interaction[Any], scope: str) -> None:
        admin = is_admin(interaction)

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
            origin = self._presser(interaction)
            jobs = await self.core.service.history(origin, HISTORY_LENGTH)
            marks = await self.core.sessions.entry_numbers([job.id for job in jobs])
            text = history_text(jobs, self.core.catalog, self.core.clock.now(), marks)
            options: dict[str, Any] = {}
            view = history_view(jobs)
            if view is not None:
                options["view"] = view
            await interaction.response.send_message(text[:MAX_CONTENT], ephemeral=True, **options)
        except Exception:
            log.exception("discord: /history %s failed", interaction.id)
            await apologise(interaction, OOPS_TEXT)

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        make: Callable[[Origin], Awaitable[str]],
    ) -> None:
        """Answer a command privately with what the core says (or its refusal)."""
        try:
            origin = self._presser(interaction)
            try:
                text = await make(origin)
            except RequestRejected as exc:
                await refuse(interaction, exc)
                return
            await interaction.response.send_message(text[:MAX_CONTENT], ephemeral=True)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await apologise(interaction, OOPS_TEXT)

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
        elif name == "session_starters":
            values = list(SESSION_STARTERS)
        elif name == "blocked_words" and not comma:
            values = ["none"]
        else:
            values = []
        needle = (last if name == "allowed_models" else current).strip().lower()
        out = [prefix + v for v in values if needle in v.lower()]
        return [app_commands.Choice(name=v[:MAX_CHOICE_NAME], value=v) for v in out][:MAX_CHOICES]

    # -- buttons -----------------------------------------------------------------------------

    async def button(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str
    ) -> None:
        """Confirm, Cancel or Send again (the adapter apologises if this raises)."""
        if action is JobAction.CONFIRM:
            await self._confirm(interaction, job_id)
        elif action is JobAction.CANCEL:
            await self._cancel_job(interaction, job_id)
        else:
            await self._send_again(interaction, job_id)

    async def _confirm(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            job = await self.core.service.confirm(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        if self.sink.can_edit(job):
            await interaction.response.defer()  # the sink edits the status message
            await self.sink.progress(job)
        else:  # the request's interaction is too old to edit through: edit via this press
            await interaction.response.edit_message(
                content=progress_text(job, self.core.catalog), view=waiting_view(job)
            )

    async def _cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            outcome = await self.core.service.cancel(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        if not isinstance(outcome, Cancelled):  # sent or finished: only the presser is told
            await interaction.response.send_message(cancel_text(outcome), ephemeral=True)
            return
        await interaction.response.defer()  # the delivery says it was cancelled

    async def _send_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        try:
            job = await self.core.service.stored_result(job_id, self._presser(interaction))
        except RequestRejected as exc:
            await refuse(interaction, exc)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            files = await self.core.notifier.fetch_results(job)
        except MediaError as exc:
            log.info("job %s: result not fetched again (%s)", job.id, exc)
            await interaction.edit_original_response(content=RESULT_UNAVAILABLE_TEXT)
            return
        try:
            await _show_result(interaction, self.sink.render(job, files))
        except discord.HTTPException as exc:
            if not is_too_large(exc):
                raise
            await _show_result(interaction, self.sink.render(job, files, links_only=True))
        log.info("job %s: result sent again to user %s", job.id, interaction.user.id)


async def _show_result(interaction: discord.Interaction[Any], result: Rendered) -> None:
    options: dict[str, Any] = {"content": result.content, "embed": result.embed}
    view = result.view()
    if view is not None:
        options["view"] = view
    with ExitStack() as stack:
        await interaction.edit_original_response(attachments=result.files(stack), **options)
