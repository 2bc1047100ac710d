"""The buttons and their views (the twin of the inline keyboards that telegram/texts.py
builds), the Remix modal, and the client they and the slash commands reach the adapter
through (`GenrelayClient.handler`). A button's custom_id names its action and job, so it
outlives us; so does the Remix modal's: its submit is taken from the client's interaction
event, not from discord.py's store of open modals, which a restart empties.
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

from adapters.discord.parse import Choice, SessionOptions, SlashRequest
from adapters.discord.texts import (
    BUTTON_EMOJI,
    BUTTON_LABELS,
    REMIX_PLACEHOLDER,
    REMIX_PROMPT_LABEL,
    remix_title,
    send_again_label,
    vote_label,
)
from bot.constants import JOB_KEY_LENGTH, MAX_PROMPT_CHARS
from bot.models import Job, JobAction, JobState, Kind

__all__ = [
    "ACTIONS",
    "Community",
    "GenrelayClient",
    "Handler",
    "JobButton",
    "Sessions",
    "handler_of",
    "history_view",
    "hold_view",
    "recounted_view",
    "remix_modal",
    "shown_votes",
    "waiting_view",
]

# Buttons naming a job: Reroll, Animate, 4K under a result; Confirm and Cancel on a request
# waiting for its asker; Cancel on a job waiting its turn; Send again under /history; the
# vote (❤️ and its count) and Remix under a session entry's result.
ACTIONS = (
    JobAction.REROLL,
    JobAction.ANIMATE,
    JobAction.UPSCALE,
    JobAction.CONFIRM,
    JobAction.CANCEL,
    JobAction.SEND_AGAIN,
    JobAction.VOTE,
    JobAction.REMIX,
)
CUSTOM_ID_TEMPLATE = (
    rf"genrelay:(?P<action>{'|'.join(ACTIONS)}):(?P<job>[a-z0-9]{{{JOB_KEY_LENGTH}}})"
)
REMIX_FIELD = "prompt"  # the Remix modal's text input
MODAL_TIMEOUT_S = 15 * 60.0  # how long discord.py keeps an unanswered modal


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


class Sessions(Protocol):
    """What the /session commands and the Remix modal call: the adapter's `SessionHandlers`."""

    async def on_start(
        self, interaction: discord.Interaction[Any], options: SessionOptions
    ) -> None: ...

    async def on_end(self, interaction: discord.Interaction[Any]) -> None: ...

    async def on_show(self, interaction: discord.Interaction[Any]) -> None: ...

    async def on_gallery(self, interaction: discord.Interaction[Any]) -> None: ...

    async def on_remix_prompt(
        self, interaction: discord.Interaction[Any], job_id: str, prompt: str
    ) -> None: ...


class Handler(Protocol):
    """What commands and buttons call: the adapter."""

    @property
    def community(self) -> Community: ...

    @property
    def sessions(self) -> Sessions: ...

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

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """A Remix modal submitted (discord.py dispatches every interaction here too)."""
        if self.handler is None or interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        match = re.fullmatch(CUSTOM_ID_TEMPLATE, str(data.get("custom_id") or ""))
        if match is None or match["action"] != JobAction.REMIX:
            return
        prompt = _submitted(data.get("components") or [], REMIX_FIELD)
        await self.handler.sessions.on_remix_prompt(interaction, match["job"], prompt)


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


def _submitted(components: Sequence[Any], custom_id: str) -> str:
    """What was typed into a modal's text input: in a Label (type 18) or an action row."""
    for component in components:
        if component.get("type") == 18:
            inner = [component.get("component") or {}]
        elif component.get("type") == 1:
            inner = list(component.get("components") or [])
        else:
            inner = [component]
        for item in inner:
            if item.get("custom_id") == custom_id:
                return str(item.get("value") or "")
    return ""


class _RemixModal(discord.ui.Modal):
    """Asks for a remix's prompt. Its submit is handled by `GenrelayClient.on_interaction`
    (by its custom_id), so this keeps nothing and does nothing on submit."""

    def __init__(self, job_id: str, number: int | None) -> None:
        super().__init__(
            title=remix_title(number),
            timeout=MODAL_TIMEOUT_S,
            custom_id=f"genrelay:{JobAction.REMIX}:{job_id}",
        )
        field = discord.ui.TextInput[_RemixModal](
            custom_id=REMIX_FIELD,
            style=discord.TextStyle.paragraph,
            placeholder=REMIX_PLACEHOLDER,
            max_length=MAX_PROMPT_CHARS,
            required=True,
        )
        self.add_item(discord.ui.Label(text=REMIX_PROMPT_LABEL, component=field))


def remix_modal(job_id: str, number: int | None) -> discord.ui.Modal:
    """The Remix button's answer: a form asking for the new prompt."""
    return _RemixModal(job_id, number)


def _buttons(message: discord.Message) -> list[tuple[JobAction, str, str | None]]:
    """The genrelay buttons on a message: (action, job id, label), in order."""
    out = []
    for row in message.components:
        for child in getattr(row, "children", ()):
            match = re.fullmatch(CUSTOM_ID_TEMPLATE, getattr(child, "custom_id", None) or "")
            if match is not None:
                out.append((JobAction(match["action"]), match["job"], child.label))
    return out


def shown_votes(message: discord.Message, job_id: str) -> int | None:
    """The count the message's vote button for `job_id` shows (None: no such button)."""
    for action, job, label in _buttons(message):
        if action is JobAction.VOTE and job == job_id:
            return int(label) if label and label.isdigit() else None
    return None


def recounted_view(message: discord.Message, job_id: str, votes: int) -> discord.ui.View:
    """The message's buttons as they are, the vote for `job_id` showing `votes`."""
    buttons = [
        JobButton(
            action,
            job,
            label=vote_label(votes) if action is JobAction.VOTE and job == job_id else label,
        )
        for action, job, label in _buttons(message)
    ]
    return _view(*buttons)


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
