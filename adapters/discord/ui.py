"""What users touch: the client, the slash commands with autocomplete, and the buttons.

Commands are module functions turned into fresh `app_commands.Command` objects for every
tree, so serving and `genrelay discord sync` register the same definitions and nothing is
shared between clients. They reach the adapter through the client (`GenrelayClient.handler`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import yarl

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord.constants import CUSTOM_ID_TEMPLATE, DISCORD_API_BASE
from adapters.discord.words import (
    BUTTON_EMOJI,
    BUTTON_LABELS,
    HELP_TEXT,
    USAGE_SCOPES,
    setting_label,
)
from bot.community import SETTING_NAMES
from bot.config import Settings
from bot.models import Kind

__all__ = [
    "Choice",
    "GenrelayClient",
    "Handler",
    "JobButton",
    "SlashRequest",
    "build_tree",
    "is_thread",
    "pointed_at",
]

Choice = app_commands.Choice[str]
THREAD_TYPES = frozenset(
    {
        discord.ChannelType.public_thread,
        discord.ChannelType.private_thread,
        discord.ChannelType.news_thread,
    }
)


@dataclass(frozen=True, slots=True)
class SlashRequest:
    """A /imagine or /video as discord.py parsed its options."""

    kind: Kind
    prompt: str
    model: str | None
    aspect_ratio: str | None
    quality: str | None
    attachments: tuple[discord.Attachment | None, ...]


class Handler(Protocol):
    """What commands and buttons call: the adapter."""

    def models_text(self) -> str: ...

    def model_choices(self, kind: Kind, current: str) -> list[Choice]: ...

    def option_choices(
        self, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
    ) -> list[Choice]: ...

    async def on_generate(
        self, interaction: discord.Interaction[Any], request: SlashRequest
    ) -> None: ...

    async def on_button(
        self, interaction: discord.Interaction[Any], action: str, job_id: str
    ) -> None: ...

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


class GenrelayClient(discord.Client):
    """A discord.Client that knows who handles its commands (None when only syncing)."""

    def __init__(self, handler: Handler | None, **options: Any) -> None:
        super().__init__(**options)
        self.handler = handler


def _handler(interaction: discord.Interaction[Any]) -> Handler:
    client = interaction.client
    if not isinstance(client, GenrelayClient) or client.handler is None:
        raise RuntimeError("this client has no genrelay handler")
    return client.handler


def is_thread(channel: object) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=CUSTOM_ID_TEMPLATE,
):
    """A button about one job: Reroll / Animate / 4K under a result, Confirm / Cancel on a
    request or a job waiting, Send again under /history. The custom_id names the action and
    the job, so it outlives us. `label` replaces the action's usual label."""

    def __init__(self, action: str, job_id: str, *, label: str | None = None) -> None:
        style = discord.ButtonStyle.success if action == "cf" else discord.ButtonStyle.secondary
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
        return cls(match["action"], match["job"], label=label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).on_button(interaction, self.action, self.job_id)


# -- slash commands --------------------------------------------------------------------------

Interaction = discord.Interaction[GenrelayClient]


async def _image_models(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).model_choices(Kind.IMAGE, current)


async def _video_models(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).model_choices(Kind.VIDEO, current)


async def _image_ratios(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).option_choices(interaction, Kind.IMAGE, "aspect_ratios", current)


async def _video_ratios(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).option_choices(interaction, Kind.VIDEO, "aspect_ratios", current)


async def _image_qualities(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).option_choices(interaction, Kind.IMAGE, "qualities", current)


@app_commands.describe(
    prompt="What to make",
    model="Which model (default: the house image model)",
    aspect_ratio="Shape of the image",
    quality="Resolution, for models that offer it",
    image1="A reference image",
    image2="Another reference image",
    image3="Another reference image",
)
@app_commands.autocomplete(
    model=_image_models, aspect_ratio=_image_ratios, quality=_image_qualities
)
async def _imagine(
    interaction: Interaction,
    prompt: str,
    model: str | None = None,
    aspect_ratio: str | None = None,
    quality: str | None = None,
    image1: discord.Attachment | None = None,
    image2: discord.Attachment | None = None,
    image3: discord.Attachment | None = None,
) -> None:
    attachments = (image1, image2, image3)
    request = SlashRequest(Kind.IMAGE, prompt, model, aspect_ratio, quality, attachments)
    await _handler(interaction).on_generate(interaction, request)


@app_commands.describe(
    prompt="What should happen",
    model="Which model (default: the house video model)",
    aspect_ratio="Shape of the video, for models that offer it",
    image1="A photo to start from",
    image2="Another photo",
)
@app_commands.autocomplete(model=_video_models, aspect_ratio=_video_ratios)
async def _video(
    interaction: Interaction,
    prompt: str,
    model: str | None = None,
    aspect_ratio: str | None = None,
    image1: discord.Attachment | None = None,
    image2: discord.Attachment | None = None,
) -> None:
    request = SlashRequest(Kind.VIDEO, prompt, model, aspect_ratio, None, (image1, image2))
    await _handler(interaction).on_generate(interaction, request)


async def _models(interaction: Interaction) -> None:
    await interaction.response.send_message(_handler(interaction).models_text(), ephemeral=True)


async def _help(interaction: Interaction) -> None:
    await interaction.response.send_message(HELP_TEXT, ephemeral=True)


async def _setting_values(interaction: Interaction, current: str) -> list[Choice]:
    return _handler(interaction).setting_value_choices(interaction, current)


async def _settings_show(interaction: Interaction) -> None:
    await _handler(interaction).on_settings_show(interaction)


@app_commands.describe(name="Which setting", value="Its new value")
@app_commands.choices(
    name=[app_commands.Choice(name=setting_label(n, m), value=n) for n, m in SETTING_NAMES.items()]
)
@app_commands.autocomplete(value=_setting_values)
async def _settings_set(interaction: Interaction, name: str, value: str) -> None:
    await _handler(interaction).on_settings_set(interaction, name, value)


async def _history(interaction: Interaction) -> None:
    await _handler(interaction).on_history(interaction)


@app_commands.describe(scope="Yours (the default), or everyone's in this server (admins)")
@app_commands.choices(
    scope=[app_commands.Choice(name=label, value=value) for value, label in USAGE_SCOPES.items()]
)
async def _usage(interaction: Interaction, scope: str = "me") -> None:
    await _handler(interaction).on_usage(interaction, scope)


async def _cancel(interaction: Interaction) -> None:
    await _handler(interaction).on_cancel(interaction)


def _settings_group() -> app_commands.Group:
    group = app_commands.Group(
        name="settings", description="This server's rules: limits, budget, models, blocked words"
    )
    group.add_command(
        app_commands.Command(
            name="show", description="Show this server's settings", callback=_settings_show
        )
    )
    group.add_command(
        app_commands.Command(
            name="set",
            description="Change one setting (Manage Server)",
            callback=_settings_set,
        )
    )
    return group


def build_tree(client: GenrelayClient) -> app_commands.CommandTree[GenrelayClient]:
    """The command tree: the same definitions for serving and for `genrelay discord sync`."""
    tree: app_commands.CommandTree[GenrelayClient] = app_commands.CommandTree(client)
    commands: list[app_commands.Command[Any, Any, None] | app_commands.Group] = [
        app_commands.Command(
            name="imagine", description="Make an image from a prompt", callback=_imagine
        ),
        app_commands.Command(
            name="video", description="Make a video from a prompt", callback=_video
        ),
        app_commands.Command(
            name="models", description="The models I can use, with prices", callback=_models
        ),
        app_commands.Command(name="help", description="How to use genrelay", callback=_help),
        _settings_group(),
        app_commands.Command(
            name="history", description="Your recent jobs here, to get one again", callback=_history
        ),
        app_commands.Command(
            name="usage", description="What you made and spent today", callback=_usage
        ),
        app_commands.Command(
            name="cancel",
            description="Stop your newest job if it wasn't sent yet",
            callback=_cancel,
        ),
    ]
    for command in commands:
        tree.add_command(command)
    return tree


@contextlib.contextmanager
def pointed_at(settings: Settings) -> Iterator[None]:
    """Point discord.py's REST base and gateway (class attributes) at the configured proxy,
    and put them back afterwards."""
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    base = settings.discord_api_base_url.rstrip("/")
    if base != DISCORD_API_BASE:
        Route.BASE = base
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway
