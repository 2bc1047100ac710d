"""The buttons and their views (the twin of the inline keyboards that telegram/texts.py
builds), and the client they and the slash commands reach the adapter through
(`GenrelayClient.handler`). A button's custom_id names its action and job, so it outlives us.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord.parse import Choice, SlashRequest
from adapters.discord.texts import BUTTON_EMOJI, BUTTON_LABELS, send_again_label
from bot.constants import JOB_KEY_LENGTH
from bot.models import Job, JobAction, JobState, Kind

__all__ = [
    "ACTIONS",
    "Community",
    "GenrelayClient",
    "Handler",
    "JobButton",
    "handler_of",
    "history_view",
    "hold_view",
    "waiting_view",
]

# Buttons naming a job: Reroll, Animate, 4K under a result; Confirm and Cancel on a request
# waiting for its asker; Cancel on a job waiting its turn; Send again under /history.
ACTIONS = (
    JobAction.REROLL,
    JobAction.ANIMATE,
    JobAction.UPSCALE,
    JobAction.CONFIRM,
    JobAction.CANCEL,
    JobAction.SEND_AGAIN,
)
CUSTOM_ID_TEMPLATE = (
    rf"genrelay:(?P<action>{'|'.join(ACTIONS)}):(?P<job>[a-z0-9]{{{JOB_KEY_LENGTH}}})"
)


class Community(Protocol):
    """What the community commands call: the adapter's `CommunityHandlers`."""

    def setting_value_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[Choice]: ...

    async def on_settings_show(self, interaction: discord.Interaction[Any]) -> None: ...

    async def on_settings_set(
        self, interaction: discord.Interaction[Any], name: str, value: str
    ) -> None: ...

    async def on_history(self, interaction: discord.Interaction[Any]) -> None: ...

    async def on_usage(self, interaction: discord.Interaction[Any], scope: str) -> None: ...

    async def on_cancel(self, interaction: discord.Interaction[Any]) -> None: ...


class Handler(Protocol):
    """What commands and buttons call: the adapter."""

    @property
    def community(self) -> Community: ...

    def models_text(self) -> str: ...

    def model_choices(self, kind: Kind, current: str) -> list[Choice]: ...

    def option_choices(
        self, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
    ) -> list[Choice]: ...

    async def on_generate(
        self, interaction: discord.Interaction[Any], request: SlashRequest
    ) -> None: ...

    async def on_button(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str
    ) -> None: ...


class GenrelayClient(discord.Client):
    """A discord.Client that knows who handles its commands (None when only syncing)."""

    def __init__(self, handler: Handler | None, **options: Any) -> None:
        super().__init__(**options)
        self.handler = handler


def handler_of(interaction: discord.Interaction[Any]) -> Handler:
    client = interaction.client
    if not isinstance(client, GenrelayClient) or client.handler is None:
        raise RuntimeError("this client has no genrelay handler")
    return client.handler


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=CUSTOM_ID_TEMPLATE,
):
    """A button about one job: Reroll / Animate / 4K under a result, Confirm / Cancel on a
    request or a job waiting, Send again under /history. The custom_id names the action and
    the job, so it outlives us. `label` replaces the action's usual label."""

    def __init__(self, action: JobAction, job_id: str, *, label: str | None = None) -> None:
        action = JobAction(action)
        style = (
            discord.ButtonStyle.success
            if action is JobAction.CONFIRM
            else discord.ButtonStyle.secondary
        )
        super().__init__(
            discord.ui.Button(
                label=label or BUTTON_LABELS[action],
                emoji=BUTTON_EMOJI[action],
                style=style,
                custom_id=f"genrelay:{action}:{job_id}",
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobButton:
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(JobAction(match["action"]), match["job"], label=label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await handler_of(interaction).on_button(interaction, self.action, self.job_id)


def waiting_view(job: Job) -> discord.ui.View | None:
    """A Cancel button while the job waits on our side (nothing was sent yet), else none."""
    if job.state is not JobState.RECEIVED or job.hold is not None:
        return None
    return _view(JobButton(JobAction.CANCEL, job.id))


def hold_view(job_id: str) -> discord.ui.View:
    """Confirm and Cancel on a video held for its asker."""
    return _view(JobButton(JobAction.CONFIRM, job_id), JobButton(JobAction.CANCEL, job_id))


def history_view(jobs: Sequence[Job]) -> discord.ui.View | None:
    """Send again under /history, one per job with a result, numbered like its line."""
    buttons = [
        JobButton(JobAction.SEND_AGAIN, job.id, label=send_again_label(place))
        for place, job in enumerate(jobs, start=1)
        if job.state is JobState.SUCCEEDED
    ]
    return _view(*buttons) if buttons else None


def _view(*buttons: JobButton) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view
