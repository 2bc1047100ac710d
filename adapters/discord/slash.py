"""The slash commands with their options and autocomplete, the command tree, and
`genrelay discord sync`, which registers them (serving never does). Telegram's commands are
typed text, parsed by adapters/commands.py; its command list is set by telegram/adapter.py.

Commands are module functions turned into fresh `app_commands.Command` objects for every
tree, so serving and `genrelay discord sync` register the same definitions and nothing is
shared between clients. They reach the adapter through the client (`ui.handler_of`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import yarl

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

from adapters.discord.parse import Choice, SessionOptions, SlashRequest
from adapters.discord.texts import HELP_TEXT, USAGE_SCOPES, setting_label
from adapters.discord.ui import GenrelayClient, handler_of
from bot.community import SETTING_NAMES
from bot.config import Settings
from bot.models import Kind

__all__ = ["DISCORD_API_BASE", "build_tree", "pointed_at", "sync_commands"]

DISCORD_API_BASE = "https://discord.com/api/v10"

Interaction = discord.Interaction[GenrelayClient]


async def _image_models(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).model_choices(Kind.IMAGE, current)


async def _video_models(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).model_choices(Kind.VIDEO, current)


async def _image_ratios(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).option_choices(interaction, Kind.IMAGE, "aspect_ratios", current)


async def _video_ratios(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).option_choices(interaction, Kind.VIDEO, "aspect_ratios", current)


async def _image_qualities(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).option_choices(interaction, Kind.IMAGE, "qualities", current)


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
    await handler_of(interaction).on_generate(interaction, request)


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
    await handler_of(interaction).on_generate(interaction, request)


async def _models(interaction: Interaction) -> None:
    await interaction.response.send_message(handler_of(interaction).models_text(), ephemeral=True)


async def _help(interaction: Interaction) -> None:
    await interaction.response.send_message(HELP_TEXT, ephemeral=True)


async def _setting_values(interaction: Interaction, current: str) -> list[Choice]:
    return handler_of(interaction).community.setting_value_choices(interaction, current)


async def _settings_show(interaction: Interaction) -> None:
    await handler_of(interaction).community.on_settings_show(interaction)


@app_commands.describe(name="Which setting", value="Its new value")
@app_commands.choices(
    name=[app_commands.Choice(name=setting_label(n, m), value=n) for n, m in SETTING_NAMES.items()]
)
@app_commands.autocomplete(value=_setting_values)
async def _settings_set(interaction: Interaction, name: str, value: str) -> None:
    await handler_of(interaction).community.on_settings_set(interaction, name, value)


async def _history(interaction: Interaction) -> None:
    await handler_of(interaction).community.on_history(interaction)


@app_commands.describe(scope="Yours (the default), or everyone's in this server (admins)")
@app_commands.choices(
    scope=[app_commands.Choice(name=label, value=value) for value, label in USAGE_SCOPES.items()]
)
async def _usage(interaction: Interaction, scope: str = "me") -> None:
    await handler_of(interaction).community.on_usage(interaction, scope)


async def _cancel(interaction: Interaction) -> None:
    await handler_of(interaction).community.on_cancel(interaction)


# What /session start's `duration` offers as it is typed (any duration the core takes works).
DURATIONS = {
    "15m": "15 minutes",
    "30m": "30 minutes",
    "1h": "1 hour",
    "2h": "2 hours",
    "1d": "1 day",
}


async def _durations(interaction: Interaction, current: str) -> list[Choice]:
    needle = current.strip().lower()
    return [
        app_commands.Choice(name=f"{value} — {words}", value=value)
        for value, words in DURATIONS.items()
        if needle in value or needle in words
    ]


@app_commands.describe(
    theme="What the session is about",
    duration="How long it runs, like 90s, 30m, 2h or 1d (default: 30m)",
    budget="The most its entries may spend, in USD (default: the server's limits)",
    per_person="How many entries each person may make",
    video="Whether videos can be entries (default: yes)",
    thread="Run it in a thread of its own, started from its card",
)
@app_commands.autocomplete(duration=_durations)
async def _session_start(
    interaction: Interaction,
    theme: str,
    duration: str | None = None,
    budget: float | None = None,
    per_person: int | None = None,
    video: bool | None = None,
    thread: bool = False,
) -> None:
    options = SessionOptions(theme, duration, budget, per_person, video, thread)
    await handler_of(interaction).sessions.on_start(interaction, options)


async def _session_end(interaction: Interaction) -> None:
    await handler_of(interaction).sessions.on_end(interaction)


async def _session_show(interaction: Interaction) -> None:
    await handler_of(interaction).sessions.on_show(interaction)


async def _session_gallery(interaction: Interaction) -> None:
    await handler_of(interaction).sessions.on_gallery(interaction)


def _session_group() -> app_commands.Group:
    group = app_commands.Group(
        name="session", description="Creative sessions: a theme, entries, votes and a recap"
    )
    for name, description, callback in (
        ("start", "Start a creative session here", _session_start),
        ("end", "End the session here (its starter or an admin)", _session_end),
        ("show", "How the session here stands", _session_show),
        ("gallery", "The gallery link of the session here", _session_gallery),
    ):
        group.add_command(
            app_commands.Command(name=name, description=description, callback=callback)
        )
    return group


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
        _session_group(),
    ]
    for command in commands:
        tree.add_command(command)
    return tree


@contextlib.contextmanager
def pointed_at(settings: Settings) -> Iterator[None]:
    """Point discord.py's REST base and gateway (class attributes) at the configured proxy,
    and put them back when the last holder leaves: several adapters of one process (a lease
    layer's shards) may hold it at once and leave in any order."""
    if not _POINTED:
        _POINTED.append((Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY))
    _POINTED.append(None)
    base = settings.discord_api_base_url.rstrip("/")
    if base != DISCORD_API_BASE:
        Route.BASE = base
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
    try:
        yield
    finally:
        _POINTED.pop()
        if len(_POINTED) == 1:
            saved = _POINTED.pop()
            assert saved is not None
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


# discord.py's own globals as they were before the first `pointed_at`, then one entry per
# holder: they are process-wide class attributes, so this count is too.
_POINTED: list[tuple[str, yarl.URL] | None] = []


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
