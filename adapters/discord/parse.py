"""Interactions -> frozen values: a command's options as a request, who asked and where
(the origin), attachments as reference images, the request key, and the values offered
while an option is typed (autocomplete). The twin of telegram/parse.py."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

from adapters.discord.texts import (
    attachment_unreachable_text,
    missing_permissions_text,
    not_an_image_text,
)
from bot.catalog import Catalog, ModelSpec
from bot.errors import MediaError, RequestRejected
from bot.media import MediaStore
from bot.models import GenerationRequest, Kind, Origin, ReferenceImage

__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "MAX_CHOICES",
    "MAX_CHOICE_NAME",
    "PLATFORM",
    "Choice",
    "SessionOptions",
    "SlashRequest",
    "downloaded",
    "generation_request",
    "is_admin",
    "is_thread",
    "model_choices",
    "option_choices",
    "origin_of",
    "references",
    "request_key",
    "require_post_permission",
]

log = logging.getLogger(__name__)

PLATFORM = "discord"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # an unboosted server
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
MAX_CHOICES = 25  # autocomplete choices
MAX_CHOICE_NAME = 100

Choice = app_commands.Choice[str]
THREAD_TYPES = frozenset(
    {
        discord.ChannelType.public_thread,
        discord.ChannelType.private_thread,
        discord.ChannelType.news_thread,
    }
)
# Channels whose permissions discord.py can compute from its cache.
GUILD_CHANNELS = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel, discord.Thread)


@dataclass(frozen=True, slots=True)
class SlashRequest:
    """A /imagine or /video as discord.py parsed its options."""

    kind: Kind
    prompt: str
    model: str | None
    aspect_ratio: str | None
    quality: str | None
    attachments: tuple[discord.Attachment | None, ...]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """A /session start as discord.py parsed its options."""

    theme: str
    duration: str | None = None
    budget: float | None = None
    per_person: int | None = None
    video: bool | None = None
    thread: bool = False

    def text(self) -> str:
        """The options as the shared grammar types them, for the core's `parse_start`:
        "foxes --for 30m --budget 5 --per-person 3 --video off"."""
        words = [self.theme]
        if self.duration is not None:
            words += ["--for", "".join(self.duration.split())]  # "30 m" is "30m"
        if self.budget is not None:
            words += ["--budget", f"{self.budget:g}"]
        if self.per_person is not None:
            words += ["--per-person", str(self.per_person)]
        if self.video is not None:
            words += ["--video", "on" if self.video else "off"]
        return " ".join(words)


def is_thread(channel: object) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


def _blank(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def request_key(interaction: discord.Interaction[Any]) -> str:
    """The core's idempotency key of a command or button press: its interaction."""
    return f"{PLATFORM}:{interaction.id}"


def is_admin(interaction: discord.Interaction[Any]) -> bool:
    """A server admin: Manage Server there. In DMs nobody is (operators still are: the core
    checks them), or anyone could lift their own limits."""
    return interaction.guild_id is not None and interaction.permissions.manage_guild


def origin_of(
    interaction: discord.Interaction[Any], message_id: int | None, received_at: float
) -> Origin:
    """Who asked (or pressed), where, and what the sink needs later: the interaction's
    token, when its 15 minutes started by our clock, and the upload limit it gave."""
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
            "received_at": received_at,
            "upload_limit": int(interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT),
        },
    )


def generation_request(
    command: SlashRequest,
    interaction: discord.Interaction[Any],
    origin: Origin,
    images: tuple[ReferenceImage, ...],
) -> GenerationRequest:
    return GenerationRequest(
        kind=command.kind,
        prompt=command.prompt,
        origin=origin,
        model=_blank(command.model),
        images=images,
        aspect_ratio=_blank(command.aspect_ratio),
        quality=_blank(command.quality),
        request_key=request_key(interaction),
    )


def require_post_permission(interaction: discord.Interaction[Any]) -> None:
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


def references(
    attachments: Sequence[discord.Attachment | None],
    max_bytes: int,
    too_large: Callable[[int], RequestRejected],
) -> tuple[ReferenceImage, ...]:
    """Attachments as reference images, checked from their metadata (no download: that
    comes after the defer, in `downloaded`). Raises RequestRejected."""
    out = []
    for att in attachments:
        if att is None:
            continue
        mime = (att.content_type or mimetypes.guess_type(att.filename)[0] or "").split(";")[0]
        if mime.strip().lower() not in IMAGE_TYPES:
            raise RequestRejected(not_an_image_text(att.filename), code="not_an_image")
        if att.size > max_bytes:
            raise too_large(att.size)
        out.append(ReferenceImage(ref=att.url, mime=mime, size=att.size, filename=att.filename))
    return tuple(out)


async def downloaded(
    images: Sequence[ReferenceImage], media: MediaStore, http: httpx.AsyncClient
) -> tuple[ReferenceImage, ...]:
    """Each attachment downloaded (size-capped) and decoded, so nothing corrupt is paid
    for; its CDN URL (no secret in it) still goes upstream. Raises RequestRejected."""

    async def one(image: ReferenceImage) -> ReferenceImage:
        try:
            return await media.check_remote(http, image.ref, filename=image.filename)
        except MediaError as exc:
            log.info("discord: attachment %s not downloaded (%s)", image.filename, exc)
            raise RequestRejected(
                attachment_unreachable_text(image.filename), code="image_fetch"
            ) from None

    return tuple(await asyncio.gather(*(one(image) for image in images)))


# -- autocomplete ----------------------------------------------------------------------------


def model_choices(catalog: Catalog, kind: Kind, current: str) -> list[Choice]:
    needle = current.strip().lower()
    out = []
    for spec in catalog.all(kind):
        label = f"{spec.name} — {spec.description}"
        if needle and needle not in spec.code.lower() and needle not in label.lower():
            continue
        out.append(app_commands.Choice(name=label[:MAX_CHOICE_NAME], value=spec.code))
    return out[:MAX_CHOICES]


def option_choices(
    catalog: Catalog, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
) -> list[Choice]:
    """Aspect ratios or qualities of the model chosen so far (or of the default model)."""
    chosen = getattr(interaction.namespace, "model", None)
    spec = catalog.resolve(chosen) if isinstance(chosen, str) and chosen else None
    specs: list[ModelSpec]
    if spec is not None and spec.kind is kind:
        specs = [spec]
    elif chosen:
        specs = catalog.all(kind)
    else:
        specs = [catalog.default_for(kind)]
    values: list[str] = []
    for s in specs:
        values += [v for v in getattr(s, field) if v not in values]
    needle = current.strip().lower()
    return [app_commands.Choice(name=v, value=v) for v in values if needle in v][:MAX_CHOICES]
