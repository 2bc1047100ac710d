"""A fake Discord (REST API + Gateway websocket) on loopback for end-to-end tests.

Real discord.py 2.x talks to it; nothing leaves 127.0.0.1.

Pointing discord.py at the fake
-------------------------------
REST
    ``discord.http.Route.BASE = fake.api_base`` (``http://127.0.0.1:{port}/api/v10``).
    ``Route`` computes its URL from the class attribute when each route is built, so
    setting it before ``client.start()`` is enough.

Webhooks / interaction responses
    ``discord/webhook/async_.py`` builds ``discord.http.Route`` objects too (same
    ``Route.BASE``; there is no separate base). The paths it uses are
    ``POST /interactions/{id}/{token}/callback?with_response=1`` (always asks for the
    callback response object), ``POST /webhooks/{app_id}/{token}?wait=1&with_components=0``
    (followups) and ``GET/PATCH/DELETE /webhooks/{app_id}/{token}/messages/{id|@original}``.
    These requests are sent on the client's own aiohttp session *without* an
    ``Authorization`` header; everything else carries ``Authorization: Bot <token>``.

Gateway
    A plain ``discord.Client`` never asks ``GET /gateway/bot``: it connects straight to
    the class attribute ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``
    (``yarl.URL("wss://gateway.discord.gg/")``), so also set
    ``DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``. (Only
    ``AutoShardedClient`` without an explicit ``shard_count`` uses ``GET /gateway/bot``,
    which the fake also serves.) After READY, discord.py resumes against READY's
    ``resume_gateway_url``, which is the fake's URL as well.
    ``FakeDiscord.point_discord_py()`` does both assignments and restores them.

Compression
    discord.py 2.7 always asks for transport compression (``?v=10&encoding=json&compress=``
    ``zlib-stream``, or ``zstd-stream`` when ``zstandard`` / ``compression.zstd`` is
    importable); ``Client`` has no option to connect uncompressed. The fake honours what is
    asked: zlib-stream (one shared ``compressobj`` per connection, every payload flushed
    with ``Z_SYNC_FLUSH`` so each binary frame ends in ``00 00 ff ff``), zstd-stream (one
    streaming compressor per connection, flushed per frame), or plain text frames when no
    ``compress`` query is given.

Notes on discord.py behaviour the fake has to match
    * a 429 is only retried when the response carries a ``Via`` header (otherwise
      discord.py assumes a Cloudflare ban and raises), so 429s send ``Via: 1.1 google``.
    * ``Interaction`` needs ``attachment_size_limit`` in the payload; ``AppInfo`` needs
      ``bot_public``/``bot_require_code_grant``/``verify_key``/``owner``; members need
      ``flags`` and ``roles``.
    * ``on_ready`` fires only ``guild_ready_timeout`` seconds (default 2.0) after the last
      GUILD_CREATE; pass ``guild_ready_timeout=0.1`` to ``discord.Client`` in tests.
    * ``Messageable.send`` always sends a random ``nonce`` with ``enforce_nonce: true``.

Usage::

    async with FakeDiscord() as fake:
        fake.add_guild(1000, "guild", channels=[2000])
        with fake.point_discord_py():
            client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.1)
            ...  # start the client in a task
            await fake.wait_connected(client=client)
            record = await fake.slash("imagine", guild_id=1000, channel_id=2000, user_id=5,
                                      options={"prompt": "a cat"})
            await fake.wait_for(lambda: fake.original_response(record.token))

Behaviour worth knowing
    * Every HTTP request is appended to ``fake.requests`` (``Recorded``); gateway connects
      go to ``fake.gateway_connections`` (their query) and IDENTIFY bodies to
      ``fake.identify_payloads``.
    * Interaction callbacks: one per interaction (second -> 400 code 40060), within
      ``callback_window`` seconds (default 3, like Discord; late -> 404 code 10062).
      ``with_response=1`` returns the interaction callback response object, else 204.
    * Interaction webhooks (``/webhooks/{app_id}/{token}...``) answer 401
      ``{"message": "Invalid Webhook Token", "code": 50027}`` once the token is older than
      15 minutes; discord.py raises a plain ``discord.HTTPException`` (status 401) for it.
    * ``POST /channels/{id}/messages``: 403 code 50013 after ``deny_send(id)`` (also for
      threads of a denied parent), 400 code 50035 for content over 2000 characters, 400
      code 50006 for an empty message, ``nonce`` + ``enforce_nonce`` deduplicated per
      author for 5 minutes.
    * Messages the fake creates are not echoed as MESSAGE_CREATE unless
      ``echo_message_events=True``. MESSAGE_CREATE events pushed with ``dispatch`` are
      stored, so replies can reference them.
    * Members have @everyone's permissions; the guild owner has all of them, and
      ``grant(guild_id, user_id, MANAGE_GUILD)`` adds more for one member.
    * Sharding, as Discord documents it (docs/events/gateway.mdx, "Sharding"): IDENTIFY
      with ``shard: [i, n]`` gets a READY carrying ``shard`` and listing only the guilds
      with ``(guild_id >> 22) % n == i``, then only their GUILD_CREATEs; every later event
      of a guild (``dispatch``: GUILD_CREATE/UPDATE by ``id``, the rest by ``guild_id``,
      INTERACTION_CREATE included) goes only to the sessions of its shard, an event without
      a guild to shard 0's; a session without ``shard`` gets everything. A shard outside
      ``0 <= i < n`` is closed with 4010 Invalid shard. Two sessions identifying the same
      ``[i, n]`` are both accepted and both get that shard's events: the docs say "You can
      establish multiple sessions with the same [shard_id, num_shards]", and neither
      disconnect nor refuse. ``fake.recommended_shards`` is GET /gateway/bot's ``shards``;
      ``fake.live_shards()`` lists the shards of the connected sessions.
    * Only guild interactions are built (no DMs). Their ``attachment_size_limit`` is
      ``fake.attachment_size_limit`` (10 MiB unless a test lowers it).
    * ``fail_next(..., match=predicate)`` fails only requests the predicate accepts, e.g.
      uploads (``lambda r: bool(r.files)``) and not the text edits on the same route.
    * ``on_next(method, path_prefix, hook)`` runs ``hook(recorded)`` on the next matching
      request before it is answered (an awaitable it returns is awaited first): a slow
      answer, or something that happens meanwhile.
    * A message holds at most 10 files and 10 embeds; embeds at most 6000 characters in all
      (title 256, description 4096, footer 2048, author 256, 25 fields); an attachment's
      description (alt text) at most 1024; a nonce at most 25 characters: else 400 code 50035.
    * Pins (``PUT|DELETE /channels/{id}/messages/pins/{message}``, ``GET .../pins``): the
      bot needs ``PIN_MESSAGES`` (``grant(guild, bot_user_id, PIN_MESSAGES)``; @everyone
      has it not) else 403 code 50013; at most 250 per channel (400 code 30003); ephemeral
      or unknown messages 404 code 10008. A pin posts a type 6 system message and sends
      CHANNEL_PINS_UPDATE; ``fake.pins(channel_id)`` lists them, newest first.
    * ``POST /channels/{id}/messages/{message}/threads`` starts a public thread whose id is
      the message's (one per message: 400 code 160004), in a text or announcement channel
      only (400 code 50024), with ``CREATE_PUBLIC_THREADS`` (403 code 50013), a 1-100
      character name and an archive duration of 60, 1440, 4320 or 10080 (400 code 50035).
      The message gets ``thread`` and the HAS_THREAD flag; THREAD_CREATE is sent.
    * Modals (callback type 9) are checked like Discord does: a title of 1-45 characters,
      a custom_id of 1-100, 1-5 components, each a Label (type 18, label up to 45) holding a
      text input, or a (deprecated) action row holding one; text inputs with a custom_id,
      style 1 or 2, lengths within 0-4000, a placeholder up to 100. A modal cannot answer
      a modal submit. ``fake.submit_modal(opened, {custom_id: value})`` submits one as its
      user would (the client enforces ``required`` and the lengths, so the fake raises
      ValueError for a submit Discord's client would not send).

All times (token expiry, nonce window, timestamps, snowflakes) use the ``clock`` given to
the constructor, so tests can move time forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import importlib
import json
import math
import mimetypes
import re
import secrets
import socket
import struct
import time
import warnings
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import quote

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

with warnings.catch_warnings():
    # discord.py imports the deprecated ``audioop`` (voice); pytest runs with -W error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

JSON = dict[str, Any]
T = TypeVar("T")

__all__ = [
    "ATTACH_FILES",
    "CREATE_PUBLIC_THREADS",
    "EVERYONE_PERMISSIONS",
    "MANAGE_GUILD",
    "PIN_MESSAGES",
    "SEND_MESSAGES",
    "SEND_MESSAGES_IN_THREADS",
    "VIEW_CHANNEL",
    "FakeDiscord",
    "FakeInteraction",
    "Recorded",
]

DISCORD_EPOCH_MS: Final = 1_420_070_400_000
INTERACTION_TOKEN_TTL: Final = 15 * 60.0
NONCE_WINDOW: Final = 5 * 60.0
HEARTBEAT_INTERVAL_MS: Final = 41_250
ATTACHMENT_SIZE_LIMIT: Final = 10 * 1024 * 1024
MAX_CONTENT_LENGTH: Final = 2000
MAX_ATTACHMENTS: Final = 10  # files in one message
MAX_EMBEDS: Final = 10
MAX_EMBED_CHARS: Final = 6000  # title, description, fields, footer, author of all embeds
MAX_ALT_TEXT: Final = 1024  # an attachment's description
MAX_PINS: Final = 250  # pinned messages in one channel
MAX_NONCE: Final = 25  # characters of a message's nonce
THREAD_ARCHIVE_MINUTES: Final = frozenset({60, 1440, 4320, 10080})
THREAD_TYPES: Final = frozenset({10, 11, 12})  # announcement, public, private thread

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE: Final = 1 << 0
ADMINISTRATOR: Final = 1 << 3
MANAGE_GUILD: Final = 1 << 5
ADD_REACTIONS: Final = 1 << 6
VIEW_CHANNEL: Final = 1 << 10
SEND_MESSAGES: Final = 1 << 11
EMBED_LINKS: Final = 1 << 14
ATTACH_FILES: Final = 1 << 15
READ_MESSAGE_HISTORY: Final = 1 << 16
MENTION_EVERYONE: Final = 1 << 17
USE_EXTERNAL_EMOJIS: Final = 1 << 18
CHANGE_NICKNAME: Final = 1 << 26
USE_APPLICATION_COMMANDS: Final = 1 << 31
CREATE_PUBLIC_THREADS: Final = 1 << 35
SEND_MESSAGES_IN_THREADS: Final = 1 << 38
PIN_MESSAGES: Final = 1 << 51  # split from MANAGE_MESSAGES (1 << 13); pinning needs this one
ALL_PERMISSIONS: Final = (1 << 51) - 1
EVERYONE_PERMISSIONS: Final = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)

# Message flags.
FLAG_SUPPRESS_EMBEDS: Final = 1 << 2
FLAG_HAS_THREAD: Final = 1 << 5
FLAG_EPHEMERAL: Final = 1 << 6
FLAG_LOADING: Final = 1 << 7

# Interaction types / callback types.
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
CB_PONG, CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE = 1, 4, 5, 6, 7
CB_AUTOCOMPLETE, CB_MODAL = 8, 9

_API_RE: Final = re.compile(r"^/api/v(\d+)(/.*)$")
_WEBHOOK_TOKEN_RE: Final = re.compile(r"^(/(?:webhooks|interactions)/[^/]+/)[^/]+")


# --------------------------------------------------------------------------- records


@dataclass
class Recorded:
    """One HTTP request received by the fake.

    ``path`` is relative to the API base for API calls (``/channels/1/messages``) and the
    raw path otherwise (``/attachments/5/a.png``). ``json`` is the JSON body, or the
    ``payload_json`` part of a multipart body. ``files`` are the uploaded file parts as
    (filename, bytes, content type as sent).
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes, str]]
    headers: dict[str, str]
    time: float
    raw_path: str = ""
    status: int | None = None
    file_fields: list[str] = field(default_factory=list, repr=False)


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched, plus what the bot did with it."""

    id: str
    token: str
    type: int
    application_id: str
    guild_id: int
    channel_id: int
    user_id: int
    payload: JSON
    created_at: float
    name: str | None = None
    custom_id: str | None = None
    source_message_id: str | None = None
    callbacks: list[JSON] = field(default_factory=list)
    response_type: int | None = None
    original_message_id: str | None = None
    followup_message_ids: list[str] = field(default_factory=list)
    autocomplete_choices: list[JSON] | None = None
    modal: JSON | None = None

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None


@dataclass
class _FailRule:
    method: str
    prefix: str
    status: int
    retry_after: float
    global_: bool
    remaining: int
    body: JSON | None
    match: Callable[[Recorded], bool] | None = None


@dataclass
class _Channel:
    id: int
    guild_id: int
    name: str
    type: int = 0
    parent_id: int | None = None
    position: int = 0


@dataclass
class _Guild:
    id: int
    name: str
    owner_id: int
    channel_ids: list[int]
    thread_ids: list[int]
    everyone_permissions: int
    joined_at: str
    member_permissions: dict[int, int] = field(default_factory=dict)


@dataclass
class _StoredFile:
    filename: str
    data: bytes
    content_type: str


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, *, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        out: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


# --------------------------------------------------------------------------- gateway


def _zstd_compressor() -> Callable[[bytes], bytes]:
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        zstd: Any = importlib.import_module("compression.zstd")
        std = zstd.ZstdCompressor()
        return lambda data: bytes(std.compress(data, mode=zstd.ZstdCompressor.FLUSH_BLOCK))
    cobj = zstandard.ZstdCompressor().compressobj()
    flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return lambda data: bytes(cobj.compress(data) + cobj.flush(flush_block))


class _Connection:
    """One websocket connection (compression context is per connection)."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None, query: JSON) -> None:
        self.ws = ws
        self.compress = compress
        self.query = query
        self.lock = asyncio.Lock()
        self.session: _Session | None = None
        self._encode: Callable[[bytes], bytes] | None
        if compress == "zlib-stream":
            zobj = zlib.compressobj()
            self._encode = lambda data: zobj.compress(data) + zobj.flush(zlib.Z_SYNC_FLUSH)
        elif compress == "zstd-stream":
            self._encode = _zstd_compressor()
        else:
            self._encode = None

    async def send(self, payload: JSON) -> bool:
        async with self.lock:
            return await self.send_locked(payload)

    async def send_locked(self, payload: JSON) -> bool:
        if self.ws.closed:
            return False
        raw = json.dumps(payload, separators=(",", ":"))
        try:
            if self._encode is None:
                await self.ws.send_str(raw)
            else:
                await self.ws.send_bytes(self._encode(raw.encode()))
        except (ConnectionError, RuntimeError):
            return False
        return True


class _Session:
    """A gateway session (survives reconnects, replayed on RESUME)."""

    def __init__(self, session_id: str, shard: tuple[int, int] | None = None) -> None:
        self.session_id = session_id
        self.shard = shard  # [shard_id, num_shards] from IDENTIFY; None: unsharded
        self.seq = 0
        self.backlog: list[JSON] = []
        self.connection: _Connection | None = None
        self.lock = asyncio.Lock()

    def receives(self, guild_id: int | None) -> bool:
        """Whether Discord routes this guild's events (None: no guild) to this session."""
        if self.shard is None:
            return True
        shard_id, num_shards = self.shard
        if guild_id is None:
            return shard_id == 0  # DMs and other guildless events: shard 0 only
        return (guild_id >> 22) % num_shards == shard_id

    async def dispatch(self, event: str, data: JSON) -> None:
        async with self.lock:
            self.seq += 1
            payload: JSON = {"op": 0, "t": event, "s": self.seq, "d": data}
            self.backlog.append(payload)
            del self.backlog[:-1000]
            conn = self.connection
            if conn is not None:
                async with conn.lock:
                    await conn.send_locked(payload)


# --------------------------------------------------------------------------- helpers


def _guild_of(event: str, data: JSON) -> int | None:
    """The guild a DISPATCH event belongs to, which picks its shard (None: shard 0's)."""
    raw = data.get("id") if event in ("GUILD_CREATE", "GUILD_UPDATE") else data.get("guild_id")
    return int(raw) if raw is not None else None


def _shard_of(raw: object) -> tuple[int, int] | bool | None:
    """IDENTIFY's `shard` as (shard_id, num_shards); None when absent; False when Discord
    would close with 4010 Invalid shard."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        return False
    shard_id, num_shards = raw
    if not (isinstance(shard_id, int) and isinstance(num_shards, int)):
        return False
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        return False
    return shard_id, num_shards


def _image_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(length)
    return None


def _too_long(name: str, limit: int) -> JSON:
    error = {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}
    return {name: {"_errors": [error]}}


def _bad_form(name: str) -> _ApiError:
    error = {"code": "BASE_TYPE_BAD_VALUE", "message": "Invalid value."}
    return _ApiError(400, 50035, "Invalid Form Body", errors={name: {"_errors": [error]}})


# Per embed: the longest of each text (https://discord.com/developers/docs/resources/message
# #embed-object-embed-limits); all embeds of a message together hold MAX_EMBED_CHARS.
_EMBED_LIMITS: Final = {"title": 256, "description": 4096}


def _validate_embeds(embeds: Sequence[JSON]) -> None:
    if len(embeds) > MAX_EMBEDS:
        raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long("embeds", MAX_EMBEDS))
    total = 0
    for embed in embeds:
        texts: list[tuple[str, str, int]] = [
            (key, str(embed.get(key) or ""), limit) for key, limit in _EMBED_LIMITS.items()
        ]
        texts.append(("footer", str((embed.get("footer") or {}).get("text") or ""), 2048))
        texts.append(("author", str((embed.get("author") or {}).get("name") or ""), 256))
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long("fields", 25))
        for f in fields:
            texts += [
                ("name", str(f.get("name") or ""), 256),
                ("value", str(f.get("value") or ""), 1024),
            ]
        for key, text, limit in texts:
            if len(text) > limit:
                raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long(key, limit))
            total += len(text)
    if total > MAX_EMBED_CHARS:
        raise _ApiError(
            400, 50035, "Invalid Form Body", errors=_too_long("embeds", MAX_EMBED_CHARS)
        )


def _validate_modal(data: JSON) -> None:
    """A modal as Discord takes it (see the module docstring)."""
    title, custom_id = str(data.get("title") or ""), str(data.get("custom_id") or "")
    components = data.get("components") or []
    if not 1 <= len(title) <= 45:
        raise _bad_form("title")
    if not 1 <= len(custom_id) <= 100:
        raise _bad_form("custom_id")
    if not 1 <= len(components) <= 5:
        raise _bad_form("components")
    for component in components:
        if component.get("type") == 18:
            if not 1 <= len(str(component.get("label") or "")) <= 45:
                raise _bad_form("label")
            _validate_text_input(component.get("component") or {}, labelled=True)
        elif component.get("type") == 1 and len(component.get("components") or []) == 1:
            _validate_text_input(component["components"][0], labelled=False)
        else:
            raise _bad_form("components")


def _validate_text_input(field_: JSON, *, labelled: bool) -> None:
    if field_.get("type") != 4 or field_.get("style") not in (1, 2):
        raise _bad_form("component")
    if not 1 <= len(str(field_.get("custom_id") or "")) <= 100:
        raise _bad_form("custom_id")
    if not labelled and not 1 <= len(str(field_.get("label") or "")) <= 45:
        raise _bad_form("label")  # a text input in an action row names itself
    low, high = field_.get("min_length"), field_.get("max_length")
    if low is not None and not 0 <= int(low) <= 4000:
        raise _bad_form("min_length")
    if high is not None and not 1 <= int(high) <= 4000:
        raise _bad_form("max_length")
    if len(str(field_.get("placeholder") or "")) > 100:
        raise _bad_form("placeholder")
    if len(str(field_.get("value") or "")) > 4000:
        raise _bad_form("value")


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    # discord.py only decodes bodies whose Content-Type is exactly "application/json"
    # (aiohttp's json_response would append "; charset=utf-8").
    raw = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(
        status=status, body=raw, headers={**headers, "Content-Type": "application/json"}
    )


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _norm_prefix(prefix: str) -> str:
    m = _API_RE.match(prefix)
    if m:
        prefix = m.group(2)
    return prefix if prefix.startswith("/") else "/" + prefix


def _bucket_for(method: str, path: str) -> str:
    template = _WEBHOOK_TOKEN_RE.sub(r"\1:token", path)
    template = re.sub(r"/\d+", "/:id", template)
    return hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- the fake

_Handler = Callable[[Recorded, "re.Match[str]"], Awaitable[web.StreamResponse]]
RequestHook = Callable[[Recorded], Awaitable[None] | None]
"""Run on a request once it has been read, before it is answered (see ``on_next``)."""


class FakeDiscord:
    """Fake Discord REST API + Gateway for discord.py (see module docstring)."""

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",
        app_id: int = 111,
        bot_user_id: int = 111,
        clock: Callable[[], float] = time.time,
        bot_name: str = "genrelay",
        host: str = "127.0.0.1",
        callback_window: float = 3.0,
        echo_message_events: bool = False,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.clock = clock
        self.host = host
        self.callback_window = callback_window
        self.echo_message_events = echo_message_events
        # What interactions report as ``attachment_size_limit`` (Discord: 10 MiB unboosted).
        self.attachment_size_limit = ATTACHMENT_SIZE_LIMIT
        # What GET /gateway/bot recommends as `shards`.
        self.recommended_shards = 1
        self.port = 0

        self.requests: list[Recorded] = []
        self.identify_payloads: list[JSON] = []
        self.gateway_connections: list[JSON] = []
        self.resumes = 0

        self._users: dict[int, JSON] = {}
        self._guilds: dict[int, _Guild] = {}
        self._channels: dict[int, _Channel] = {}
        self._denied: set[int] = set()
        self._messages: dict[str, JSON] = {}
        self._channel_order: dict[int, list[str]] = {}
        self._files: dict[str, _StoredFile] = {}
        self._nonces: dict[tuple[str, str], tuple[float, str]] = {}
        self._interactions: dict[str, FakeInteraction] = {}
        self._interactions_by_id: dict[str, FakeInteraction] = {}
        self._global_commands: list[JSON] = []
        self._guild_commands: dict[int, list[JSON]] = {}
        self._failures: list[_FailRule] = []
        self._hooks: list[tuple[str, str, RequestHook]] = []
        self._pins: dict[int, list[tuple[str, float]]] = {}  # channel -> (message, when)
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._last_snowflake = 0
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None

        self._add_user(bot_user_id, bot_name, bot=True)
        self._routes: list[tuple[str, re.Pattern[str], bool, _Handler]] = []
        self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def close(self) -> None:
        """Stop the server. Close discord.py clients first, or they will try to reconnect."""
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=4000, message=b"fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.http_base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @contextlib.contextmanager
    def point_discord_py(self) -> Iterator[None]:
        """Set ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``; restore on exit."""
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # ------------------------------------------------------------------ setup helpers

    def add_user(self, user_id: int, name: str) -> JSON:
        return copy.deepcopy(self._add_user(user_id, name))

    def add_guild(
        self,
        guild_id: int,
        name: str,
        *,
        channels: Sequence[int],
        owner_id: int = 1,
        threads: Sequence[tuple[int, int]] = (),
        channel_names: Mapping[int, str] | None = None,
        everyone_permissions: int = EVERYONE_PERMISSIONS,
    ) -> None:
        """Register a guild with text channels and (thread_id, parent_id) threads.

        Call before the client connects (GUILD_CREATE is sent after READY), or push it
        afterwards with ``await fake.dispatch_guild_create(guild_id)``.
        """
        if owner_id not in self._users:
            self._add_user(owner_id, f"owner{owner_id}")
        names = dict(channel_names or {})
        for pos, cid in enumerate(channels):
            self._channels[cid] = _Channel(
                cid, guild_id, names.get(cid, f"chan-{cid}"), 0, None, pos
            )
        for tid, parent in threads:
            self._channels[tid] = _Channel(
                tid, guild_id, names.get(tid, f"thread-{tid}"), 11, parent
            )
        self._guilds[guild_id] = _Guild(
            id=guild_id,
            name=name,
            owner_id=owner_id,
            channel_ids=list(channels),
            thread_ids=[t for t, _ in threads],
            everyone_permissions=everyone_permissions,
            joined_at=self._iso(self.clock()),
        )

    def grant(self, guild_id: int, user_id: int, permissions: int) -> None:
        """Give a member permissions beyond @everyone's (e.g. ``MANAGE_GUILD``), as a role
        would; interactions report them in ``member.permissions``."""
        guild = self._guilds[guild_id]
        guild.member_permissions[user_id] = guild.member_permissions.get(user_id, 0) | permissions

    def deny_send(self, channel_id: int) -> None:
        """Make the bot unable to post in a channel (403 50013 + a member overwrite).

        Already-connected clients only see the overwrite after
        ``await fake.dispatch_channel_update(channel_id)``.
        """
        self._channel(channel_id)
        self._denied.add(channel_id)

    def allow_send(self, channel_id: int) -> None:
        self._denied.discard(channel_id)

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 429,
        retry_after: float = 0.5,
        global_: bool = False,
        count: int = 1,
        body: JSON | None = None,
        match: Callable[[Recorded], bool] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with an error (default: a 429).

        ``method`` may be ``"*"``; ``path_prefix`` is relative to the API base
        (``/webhooks/111/``), with or without ``/api/v10``. ``match``, when given, must
        also accept the request (its body and files are read by then), e.g.
        ``match=lambda r: bool(r.files)`` to fail only uploads.
        """
        self._failures.append(
            _FailRule(
                method.upper(),
                _norm_prefix(path_prefix),
                status,
                retry_after,
                global_,
                count,
                body,
                match,
            )
        )

    def on_next(self, method: str, path_prefix: str, hook: RequestHook) -> None:
        """Run ``hook(recorded)`` on the next ``method`` request under ``path_prefix`` (as
        for ``fail_next``), once it has been read and before it is answered (and before a
        ``fail_next`` failure); an awaitable it returns is awaited first. Each hook runs once,
        in the order they were added."""
        self._hooks.append((method.upper(), _norm_prefix(path_prefix), hook))

    # ------------------------------------------------------------------ inspection

    def find_requests(self, method: str | None = None, path_prefix: str = "") -> list[Recorded]:
        prefix = _norm_prefix(path_prefix) if path_prefix else ""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and r.path.startswith(prefix)
        ]

    def interaction(self, token_or_id: str) -> FakeInteraction:
        rec = self._interactions.get(token_or_id) or self._interactions_by_id.get(token_or_id)
        if rec is None:
            raise KeyError(token_or_id)
        return rec

    def message(self, message_id: int | str) -> JSON | None:
        msg = self._messages.get(str(message_id))
        return copy.deepcopy(msg) if msg is not None else None

    def channel_messages(self, channel_id: int, *, include_interactions: bool = True) -> list[JSON]:
        """Non-ephemeral messages in a channel, oldest first.

        Interaction responses (originals and followups) are included like in Discord;
        they carry ``webhook_id``. ``include_interactions=False`` leaves them out.
        """
        out = []
        for mid in self._channel_order.get(channel_id, []):
            msg = self._messages[mid]
            if not include_interactions and msg.get("webhook_id"):
                continue
            out.append(copy.deepcopy(msg))
        return out

    def original_response(self, interaction_token: str) -> JSON | None:
        rec = self._interactions.get(interaction_token)
        if rec is None or rec.original_message_id is None:
            return None
        return self.message(rec.original_message_id)

    def followups(self, interaction_token: str) -> list[JSON]:
        rec = self._interactions.get(interaction_token)
        if rec is None:
            return []
        return [m for mid in rec.followup_message_ids if (m := self.message(mid)) is not None]

    def message_files(self, message: Mapping[str, Any]) -> list[tuple[str, bytes, str]]:
        """(filename, bytes, content_type) of a message's attachments."""
        out = []
        for att in message.get("attachments", []):
            stored = self._files.get(str(att["id"]))
            if stored is not None:
                out.append((stored.filename, stored.data, stored.content_type))
        return out

    def pins(self, channel_id: int) -> list[str]:
        """Ids of the channel's pinned messages, the newest pin first."""
        return [mid for mid, _ in self._pins.get(channel_id, [])]

    def channel_name(self, channel_id: int) -> str:
        return self._channel(channel_id).name

    def parent_of(self, channel_id: int) -> int | None:
        """A thread's parent channel (None for a channel)."""
        return self._channel(channel_id).parent_id

    def registered_commands(self, guild_id: int | None = None) -> list[JSON]:
        cmds = self._global_commands if guild_id is None else self._guild_commands.get(guild_id, [])
        return copy.deepcopy(cmds)

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 5.0,
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeDiscord.wait_for timed out after {timeout}s")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    async def wait_for_request(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Recorded:
        """Wait until ``count`` matching requests were answered; return the last one."""

        def check() -> Recorded | None:
            hits = [
                r
                for r in self.find_requests(method, path_prefix)
                if r.status is not None and (status is None or r.status == status)
            ]
            return hits[count - 1] if len(hits) >= count else None

        return await self.wait_for(check, timeout)

    async def wait_connected(
        self,
        timeout: float = 5.0,
        *,
        client: discord.Client | None = None,
    ) -> None:
        """Wait until a session got READY and all GUILD_CREATEs.

        With ``client``, also wait for ``client.wait_until_ready()`` (on_ready fires
        ``guild_ready_timeout`` after the last GUILD_CREATE).
        """
        async with asyncio.timeout(timeout):
            await self._ready.wait()
            if client is not None:
                await client.wait_until_ready()

    # ------------------------------------------------------------------ gateway control

    async def dispatch(self, event_name: str, data: JSON) -> int:
        """Send a DISPATCH event to every identified session Discord routes it to (its guild's
        shard, or shard 0 for an event without a guild; unsharded sessions get everything);
        returns how many got it."""
        if (
            event_name == "MESSAGE_CREATE"
            and "id" in data
            and str(data["id"]) not in self._messages
        ):
            self._store_message(copy.deepcopy(data), int(data["channel_id"]))
        guild_id = _guild_of(event_name, data)
        sessions = [s for s in self._sessions.values() if s.receives(guild_id)]
        for session in sessions:
            await session.dispatch(event_name, copy.deepcopy(data))
        self._notify()
        return len(sessions)

    def live_shards(self) -> list[tuple[int, int] | None]:
        """The `[shard_id, num_shards]` of each session with a connection (None: unsharded),
        oldest first."""
        return [s.shard for s in self._sessions.values() if s.connection is not None]

    async def dispatch_guild_create(self, guild_id: int) -> None:
        await self.dispatch("GUILD_CREATE", self._guild_payload(self._guilds[guild_id]))

    async def dispatch_channel_update(self, channel_id: int) -> None:
        event = (
            "THREAD_UPDATE" if self._channel(channel_id).type in THREAD_TYPES else "CHANNEL_UPDATE"
        )
        await self.dispatch(event, self._channel_payload(channel_id))

    async def reconnect_clients(self) -> None:
        """Send op 7 RECONNECT; discord.py reconnects and RESUMEs."""
        for conn in list(self._connections):
            await conn.send({"op": 7, "d": None})

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway websocket from the server side."""
        for conn in list(self._connections):
            await conn.ws.close(code=code)

    # ------------------------------------------------------------------ interactions

    async def slash(
        self,
        command: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        options: Mapping[str, object] | None = None,
        attachments: Mapping[str, tuple[str, bytes, str]] | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
        guild_command: bool | None = None,
    ) -> FakeInteraction:
        """Dispatch an APPLICATION_COMMAND interaction (chat input).

        ``options`` maps option name to value; types come from the synced command
        definition when there is one, else from the Python type (str 3, int 4, bool 5,
        float 10). ``attachments`` maps option name to (filename, bytes, content_type);
        the file is served at ``/attachments/{id}/{filename}``. ``subcommand`` may be
        ``"sub"`` or ``"group sub"``. ``data.guild_id`` (which discord.py's CommandTree uses
        to look in its guild commands) is set when the command was synced as a guild
        command; force it with ``guild_command=True`` for commands that were never synced.
        """
        cmd_def = self._find_command(command, guild_id)
        defs: list[JSON] = list(cmd_def.get("options", [])) if cmd_def else []
        path = subcommand.split() if subcommand else []
        for part in path:
            sub = next((o for o in defs if o.get("name") == part), None)
            defs = list(sub.get("options", [])) if sub else []
        resolved: JSON = {}
        built = self._build_options(options or {}, defs, resolved)
        for name, (filename, blob, content_type) in (attachments or {}).items():
            att = self._store_file(filename, blob, content_type, ephemeral=True)
            resolved.setdefault("attachments", {})[att["id"]] = att
            built.append({"name": name, "type": 11, "value": att["id"]})
        kinds = [2, 1][-len(path) :] if path else []
        for part, kind in reversed(list(zip(path, kinds, strict=True))):
            built = [{"name": part, "type": kind, "options": built}]
        data: JSON = {
            "id": cmd_def["id"] if cmd_def else str(self._snowflake()),
            "name": command,
            "type": 1,
            "options": built,
        }
        if resolved:
            data["resolved"] = resolved
        if guild_command or (guild_command is None and cmd_def and cmd_def.get("guild_id")):
            data["guild_id"] = str(guild_id)
        return await self._dispatch_interaction(
            APPLICATION_COMMAND, data, guild_id, channel_id, user_id, locale, name=command
        )

    async def autocomplete(
        self,
        command: str,
        *,
        focused: str,
        value: str,
        guild_id: int,
        channel_id: int,
        user_id: int,
        options: Mapping[str, object] | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
        guild_command: bool | None = None,
    ) -> FakeInteraction:
        """Dispatch an APPLICATION_COMMAND_AUTOCOMPLETE interaction for ``focused``
        (``subcommand`` as for ``slash``)."""
        cmd_def = self._find_command(command, guild_id)
        defs: list[JSON] = list(cmd_def.get("options", [])) if cmd_def else []
        path = subcommand.split() if subcommand else []
        for part in path:
            sub = next((o for o in defs if o.get("name") == part), None)
            defs = list(sub.get("options", [])) if sub else []
        built = self._build_options(options or {}, defs, {})
        ftype = next((int(o["type"]) for o in defs if o.get("name") == focused), 3)
        built.append({"name": focused, "type": ftype, "value": value, "focused": True})
        kinds = [2, 1][-len(path) :] if path else []
        for part, kind in reversed(list(zip(path, kinds, strict=True))):
            built = [{"name": part, "type": kind, "options": built}]
        data: JSON = {
            "id": cmd_def["id"] if cmd_def else str(self._snowflake()),
            "name": command,
            "type": 1,
            "options": built,
        }
        if guild_command or (guild_command is None and cmd_def and cmd_def.get("guild_id")):
            data["guild_id"] = str(guild_id)
        return await self._dispatch_interaction(
            AUTOCOMPLETE, data, guild_id, channel_id, user_id, locale, name=command
        )

    async def press(
        self,
        custom_id: str,
        *,
        message_id: int | str,
        guild_id: int,
        channel_id: int,
        user_id: int,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Dispatch a MESSAGE_COMPONENT interaction (button by default) on a message.

        If the fake does not know ``message_id``, a stub bot message is created for it.
        """
        mid = str(message_id)
        if mid not in self._messages:
            stub = self._base_message(mid, channel_id, self._public_user(self.bot_user_id))
            stub["timestamp"] = self._iso(self._snowflake_time(int(mid)))
            self._messages[mid] = stub
        data: JSON = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        rec = await self._dispatch_interaction(
            MESSAGE_COMPONENT,
            data,
            guild_id,
            channel_id,
            user_id,
            locale,
            message=self._messages[mid],
            custom_id=custom_id,
            source_message_id=mid,
        )
        return rec

    async def submit_modal(
        self, opened: FakeInteraction, values: Mapping[str, str], *, locale: str = "en-US"
    ) -> FakeInteraction:
        """Dispatch the MODAL_SUBMIT of the modal ``opened`` was answered with, filled in by
        its user: ``values`` maps a text input's custom_id to what they typed (a field left
        out keeps its pre-filled ``value``). Raises ValueError for what Discord's client
        would not submit: a required field empty, a length outside min/max."""
        modal = opened.modal
        if modal is None:
            raise ValueError("that interaction was not answered with a modal")
        rows: list[JSON] = []
        for index, component in enumerate(modal.get("components") or [], start=1):
            if component.get("type") == 18:
                field_ = component["component"]
                rows.append(
                    {"type": 18, "id": index, "component": self._typed(field_, values, index)}
                )
            else:
                field_ = component["components"][0]
                rows.append(
                    {"type": 1, "id": index, "components": [self._typed(field_, values, index)]}
                )
        data: JSON = {"custom_id": modal["custom_id"], "components": rows}
        source = opened.source_message_id if opened.type == MESSAGE_COMPONENT else None
        return await self._dispatch_interaction(
            MODAL_SUBMIT,
            data,
            opened.guild_id,
            opened.channel_id,
            opened.user_id,
            locale,
            message=self._messages.get(source) if source else None,
            custom_id=str(modal["custom_id"]),
            source_message_id=source,
        )

    @staticmethod
    def _typed(field_: JSON, values: Mapping[str, str], index: int) -> JSON:
        custom_id = str(field_["custom_id"])
        value = str(values.get(custom_id, field_.get("value") or ""))
        if field_.get("required", True) and not value:
            raise ValueError(f"{custom_id} is required: the client would not submit it empty")
        if value and not (
            int(field_.get("min_length") or 0)
            <= len(value)
            <= int(field_.get("max_length") or 4000)
        ):
            raise ValueError(f"{custom_id}: the client keeps the text within its lengths")
        return {"type": 4, "id": 100 + index, "custom_id": custom_id, "value": value}

    # ------------------------------------------------------------------ internals: state

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _snowflake(self) -> int:
        ms = int(self.clock() * 1000)
        candidate = max(ms - DISCORD_EPOCH_MS, 0) << 22
        if candidate <= self._last_snowflake:
            candidate = self._last_snowflake + 1
        self._last_snowflake = candidate
        return candidate

    @staticmethod
    def _snowflake_time(snowflake: int) -> float:
        return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000

    @staticmethod
    def _iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat()

    def _add_user(self, user_id: int, name: str, *, bot: bool = False) -> JSON:
        user: JSON = {
            "id": str(user_id),
            "username": name,
            "discriminator": "0",
            "global_name": None if bot else name,
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }
        if bot:
            user.update({"verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})
        self._users[user_id] = user
        return user

    def _public_user(self, user_id: int) -> JSON:
        if user_id not in self._users:
            self._add_user(user_id, f"user{user_id}")
        user = self._users[user_id]
        keys = ("id", "username", "discriminator", "global_name", "avatar", "bot", "public_flags")
        return {k: user[k] for k in keys}

    def _channel(self, channel_id: int) -> _Channel:
        try:
            return self._channels[channel_id]
        except KeyError:
            raise _ApiError(404, 10003, "Unknown Channel") from None

    def _is_denied(self, channel_id: int) -> bool:
        ch = self._channels[channel_id]
        return channel_id in self._denied or (
            ch.parent_id is not None and ch.parent_id in self._denied
        )

    def _permissions(self, user_id: int, channel_id: int) -> int:
        ch = self._channels.get(channel_id)
        guild = self._guilds.get(ch.guild_id) if ch else None
        if guild is None:
            return EVERYONE_PERMISSIONS
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        perms = guild.everyone_permissions | guild.member_permissions.get(user_id, 0)
        if user_id == self.bot_user_id and self._is_denied(channel_id):
            perms &= ~(SEND_MESSAGES | SEND_MESSAGES_IN_THREADS)
        return perms

    def _member_payload(self, user_id: int, guild: _Guild, *, with_user: bool = True) -> JSON:
        member: JSON = {
            "roles": [],
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "joined_at": guild.joined_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self._public_user(user_id)
        return member

    def _channel_payload(self, channel_id: int) -> JSON:
        ch = self._channel(channel_id)
        if ch.type in THREAD_TYPES:
            created = self._iso(self.clock())
            return {
                "id": str(ch.id),
                "type": ch.type,
                "guild_id": str(ch.guild_id),
                "parent_id": str(ch.parent_id),
                "owner_id": str(self.bot_user_id),
                "name": ch.name,
                "last_message_id": None,
                "message_count": 0,
                "member_count": 1,
                "total_message_sent": 0,
                "rate_limit_per_user": 0,
                "flags": 0,
                "applied_tags": [],
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": created,
                    "locked": False,
                    "create_timestamp": created,
                },
            }
        overwrites = []
        if ch.id in self._denied:
            overwrites.append(
                {
                    "id": str(self.bot_user_id),
                    "type": 1,
                    "allow": "0",
                    "deny": str(SEND_MESSAGES | SEND_MESSAGES_IN_THREADS),
                }
            )
        return {
            "id": str(ch.id),
            "type": ch.type,
            "guild_id": str(ch.guild_id),
            "name": ch.name,
            "position": ch.position,
            "permission_overwrites": overwrites,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }

    def _guild_payload(self, guild: _Guild) -> JSON:
        members = [self._member_payload(uid, guild) for uid in self._users]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "application_id": None,
            "vanity_url_code": None,
            "max_members": 500_000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "features": [],
            "roles": [
                {
                    "id": str(guild.id),
                    "name": "@everyone",
                    "permissions": str(guild.everyone_permissions),
                    "position": 0,
                    "color": 0,
                    "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
                    "hoist": False,
                    "icon": None,
                    "unicode_emoji": None,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "joined_at": guild.joined_at,
            "large": False,
            "unavailable": False,
            "member_count": len(members),
            "members": members,
            "channels": [self._channel_payload(cid) for cid in guild.channel_ids],
            "threads": [self._channel_payload(tid) for tid in guild.thread_ids],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "incidents_data": None,
        }

    def _store_file(
        self, filename: str, data: bytes, content_type: str | None, *, ephemeral: bool = False
    ) -> JSON:
        att_id = str(self._snowflake())
        ctype = content_type
        if not ctype or ctype == "application/octet-stream":
            ctype = mimetypes.guess_type(filename)[0] or ctype or "application/octet-stream"
        self._files[att_id] = _StoredFile(filename, data, ctype)
        url = f"{self.http_base}/attachments/{att_id}/{quote(filename)}"
        att: JSON = {
            "id": att_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": f"{self.http_base}/proxy/attachments/{att_id}/{quote(filename)}",
            "content_type": ctype,
        }
        size = _image_size(data)
        if size is not None:
            att["width"], att["height"] = size
        if ephemeral:
            att["ephemeral"] = True
        return att

    def _find_command(self, name: str, guild_id: int) -> JSON | None:
        for cmd in self._guild_commands.get(guild_id, []):
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        for cmd in self._global_commands:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        return None

    def _build_options(
        self, options: Mapping[str, object], defs: list[JSON], resolved: JSON
    ) -> list[JSON]:
        built: list[JSON] = []
        for name, value in options.items():
            opt_def = next((o for o in defs if o.get("name") == name), None)
            if opt_def is not None:
                otype = int(opt_def["type"])
            elif isinstance(value, bool):
                otype = 5
            elif isinstance(value, int):
                otype = 4
            elif isinstance(value, float):
                otype = 10
            else:
                otype = 3
            out_value: object = value
            if otype == 6:
                uid = int(str(value))
                out_value = str(uid)
                resolved.setdefault("users", {})[str(uid)] = self._public_user(uid)
            elif otype == 7:
                cid = int(str(value))
                out_value = str(cid)
                resolved.setdefault("channels", {})[str(cid)] = {
                    **{k: v for k, v in self._channel_payload(cid).items() if k != "guild_id"},
                    "permissions": str(self._permissions(self.bot_user_id, cid)),
                }
            elif otype in (8, 9, 11):
                out_value = str(value)
            built.append({"name": name, "type": otype, "value": out_value})
        return built

    async def _dispatch_interaction(
        self,
        itype: int,
        data: JSON,
        guild_id: int,
        channel_id: int,
        user_id: int,
        locale: str,
        *,
        name: str | None = None,
        message: JSON | None = None,
        custom_id: str | None = None,
        source_message_id: str | None = None,
    ) -> FakeInteraction:
        if not self._sessions:
            raise RuntimeError("no gateway session: start the client and await wait_connected()")
        guild = self._guilds[guild_id]
        self._channel(channel_id)
        if user_id not in self._users:
            self._add_user(user_id, f"user{user_id}")
        iid = str(self._snowflake())
        token = "fake-itok-" + secrets.token_urlsafe(40)
        member = self._member_payload(user_id, guild)
        member["permissions"] = str(self._permissions(user_id, channel_id))
        channel = self._channel_payload(channel_id)
        channel["permissions"] = member["permissions"]
        payload: JSON = {
            "id": iid,
            "application_id": str(self.app_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": channel,
            "member": member,
            "app_permissions": str(self._permissions(self.bot_user_id, channel_id)),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": self.attachment_size_limit,
        }
        if message is not None:
            payload["message"] = copy.deepcopy(message)
        rec = FakeInteraction(
            id=iid,
            token=token,
            type=itype,
            application_id=str(self.app_id),
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=user_id,
            payload=payload,
            created_at=self.clock(),
            name=name,
            custom_id=custom_id,
            source_message_id=source_message_id,
        )
        self._interactions[token] = rec
        self._interactions_by_id[iid] = rec
        await self.dispatch("INTERACTION_CREATE", payload)
        return rec

    # ------------------------------------------------------------------ internals: messages

    def _base_message(self, mid: str, channel_id: int, author: JSON) -> JSON:
        return {
            "id": mid,
            "channel_id": str(channel_id),
            "author": author,
            "content": "",
            "timestamp": self._iso(self.clock()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "mention_channels": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "reactions": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }

    def _validate_payload(self, payload: JSON, n_files: int, *, creating: bool) -> None:
        content = payload.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT_LENGTH:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "content": {
                        "_errors": [
                            {
                                "code": "BASE_TYPE_MAX_LENGTH",
                                "message": "Must be 2000 or fewer in length.",
                            }
                        ]
                    }
                },
            )
        _validate_embeds(payload.get("embeds") or [])
        nonce = payload.get("nonce")
        if isinstance(nonce, str) and len(nonce) > MAX_NONCE:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long("nonce", MAX_NONCE))
        spec = payload.get("attachments") or []
        if n_files > MAX_ATTACHMENTS or len(spec) > MAX_ATTACHMENTS:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long("files", 10))
        if any(len(str(a.get("description") or "")) > MAX_ALT_TEXT for a in spec):
            raise _ApiError(400, 50035, "Invalid Form Body", errors=_too_long("attachments", 1024))
        if creating and not (
            content
            or payload.get("embeds")
            or payload.get("components")
            or payload.get("sticker_ids")
            or payload.get("poll")
            or n_files
        ):
            raise _ApiError(400, 50006, "Cannot send an empty message")

    def _attachments_from(self, rec: Recorded, payload: JSON, existing: list[JSON]) -> list[JSON]:
        """Resolve the ``attachments`` array + uploaded ``files[n]`` into attachment objects."""
        uploads: dict[int, tuple[str, bytes, str]] = {}
        for idx, (fld, file) in enumerate(zip(rec.file_fields, rec.files, strict=True)):
            m = re.fullmatch(r"files\[(\d+)\]", fld)
            uploads[int(m.group(1)) if m else idx] = file
        by_id = {str(a["id"]): a for a in existing}
        spec = payload.get("attachments")
        if spec is None:
            items: list[JSON] = [{"id": i} for i in sorted(uploads)]
            kept = list(existing)
        else:
            items, kept = list(spec), []
        out = kept
        for item in items:
            aid = str(item.get("id"))
            if aid in by_id:
                out.append(by_id[aid])
            elif aid.isdigit() and int(aid) in uploads:
                filename, data, ctype = uploads[int(aid)]
                att = self._store_file(str(item.get("filename") or filename), data, ctype)
                if item.get("description"):
                    att["description"] = item["description"]
                out.append(att)
        return out

    def _apply_content(self, msg: JSON, payload: JSON, rec: Recorded) -> None:
        if "content" in payload:
            msg["content"] = payload["content"] or ""
        if "embeds" in payload:
            msg["embeds"] = [{"type": "rich", **e} for e in payload["embeds"] or []]
        if "components" in payload:
            msg["components"] = payload["components"] or []
        if "attachments" in payload or rec.files:
            msg["attachments"] = self._attachments_from(rec, payload, msg["attachments"])
        if "flags" in payload and payload["flags"] is not None:
            keep = msg["flags"] & ~FLAG_SUPPRESS_EMBEDS
            msg["flags"] = keep | (int(payload["flags"]) & FLAG_SUPPRESS_EMBEDS)
        if payload.get("poll"):
            msg["poll"] = payload["poll"]

    def _store_message(self, msg: JSON, channel_id: int) -> None:
        self._messages[str(msg["id"])] = msg
        if not int(msg.get("flags", 0)) & FLAG_EPHEMERAL:
            self._channel_order.setdefault(channel_id, []).append(str(msg["id"]))

    async def _created(self, msg: JSON, channel_id: int) -> None:
        self._store_message(msg, channel_id)
        if self.echo_message_events and not int(msg["flags"]) & FLAG_EPHEMERAL:
            event = copy.deepcopy(msg)
            ch = self._channels.get(channel_id)
            if ch is not None:
                event["guild_id"] = str(ch.guild_id)
            await self.dispatch("MESSAGE_CREATE", event)

    async def _edited(self, msg: JSON) -> None:
        if self.echo_message_events and not int(msg["flags"]) & FLAG_EPHEMERAL:
            await self.dispatch("MESSAGE_UPDATE", copy.deepcopy(msg))

    def _new_message(
        self,
        channel_id: int,
        payload: JSON,
        rec: Recorded,
        *,
        interaction: FakeInteraction | None = None,
        msg_type: int = 0,
        extra_flags: int = 0,
    ) -> JSON:
        msg = self._base_message(
            str(self._snowflake()), channel_id, self._public_user(self.bot_user_id)
        )
        msg["type"] = msg_type
        msg["tts"] = bool(payload.get("tts", False))
        flags = int(payload.get("flags") or 0) & (FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL)
        msg["flags"] = flags | extra_flags
        self._apply_content(msg, payload, rec)
        if payload.get("nonce") is not None:
            msg["nonce"] = payload["nonce"]
        ref = payload.get("message_reference")
        if ref and ref.get("message_id"):
            ch = self._channels.get(channel_id)
            msg["message_reference"] = {
                "type": ref.get("type", 0),
                "message_id": str(ref["message_id"]),
                "channel_id": str(ref.get("channel_id") or channel_id),
                "guild_id": str(ref.get("guild_id") or (ch.guild_id if ch else "")) or None,
                "fail_if_not_exists": ref.get("fail_if_not_exists", True),
            }
            target = self._messages.get(str(ref["message_id"]))
            if target is not None:
                msg["referenced_message"] = {
                    k: v for k, v in copy.deepcopy(target).items() if k != "referenced_message"
                }
            if msg_type == 0:
                msg["type"] = 19
        if interaction is not None:
            user = self._public_user(interaction.user_id)
            msg["webhook_id"] = str(self.app_id)
            msg["application_id"] = str(self.app_id)
            meta: JSON = {
                "id": interaction.id,
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": {"0": str(interaction.guild_id)},
            }
            if interaction.name:
                meta["name"] = interaction.name
                meta["command_type"] = 1
            if interaction.original_message_id and msg_type == 0:
                meta["original_response_message_id"] = interaction.original_message_id
            if interaction.source_message_id:
                meta["interacted_message_id"] = interaction.source_message_id
            msg["interaction_metadata"] = meta
            if interaction.name:
                msg["interaction"] = {
                    "id": interaction.id,
                    "type": interaction.type,
                    "name": interaction.name,
                    "user": user,
                }
        return msg

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_routes(self) -> None:
        add = self._routes.append
        add(("GET", re.compile(r"/users/@me"), True, self._h_users_me))
        add(("GET", re.compile(r"/users/(\d+)"), True, self._h_user))
        add(("GET", re.compile(r"/(?:oauth2/)?applications/@me"), True, self._h_app))
        add(("GET", re.compile(r"/gateway"), False, self._h_gateway))
        add(("GET", re.compile(r"/gateway/bot"), True, self._h_gateway_bot))
        add(("POST", re.compile(r"/interactions/(\d+)/([^/]+)/callback"), False, self._h_callback))
        add(("POST", re.compile(r"/webhooks/(\d+)/([^/]+)"), False, self._h_webhook_execute))
        wh_msg = re.compile(r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)")
        add(("GET", wh_msg, False, self._h_webhook_get))
        add(("PATCH", wh_msg, False, self._h_webhook_edit))
        add(("DELETE", wh_msg, False, self._h_webhook_delete))
        add(("GET", re.compile(r"/channels/(\d+)"), True, self._h_channel))
        add(("GET", re.compile(r"/channels/(\d+)/messages"), True, self._h_history))
        add(("POST", re.compile(r"/channels/(\d+)/messages"), True, self._h_create_message))
        ch_msg = re.compile(r"/channels/(\d+)/messages/(\d+)")
        add(("GET", ch_msg, True, self._h_get_message))
        add(("PATCH", ch_msg, True, self._h_edit_message))
        add(("DELETE", ch_msg, True, self._h_delete_message))
        add(("POST", re.compile(r"/channels/(\d+)/typing"), True, self._h_typing))
        add(("GET", re.compile(r"/channels/(\d+)/messages/pins"), True, self._h_pins))
        pin = re.compile(r"/channels/(\d+)/messages/pins/(\d+)")
        add(("PUT", pin, True, self._h_pin))
        add(("DELETE", pin, True, self._h_unpin))
        threads = re.compile(r"/channels/(\d+)/messages/(\d+)/threads")
        add(("POST", threads, True, self._h_start_thread))
        cmds = re.compile(r"/applications/(\d+)(?:/guilds/(\d+))?/commands")
        add(("GET", cmds, True, self._h_commands_get))
        add(("PUT", cmds, True, self._h_commands_put))
        add(("POST", cmds, True, self._h_commands_post))
        cmd = re.compile(r"/applications/(\d+)(?:/guilds/(\d+))?/commands/(\d+)")
        add(("GET", cmd, True, self._h_command_get))
        add(("DELETE", cmd, True, self._h_command_delete))

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.rstrip("/") == "/gateway" and request.headers.get("Upgrade", "").lower() == (
            "websocket"
        ):
            return await self._gateway(request)
        m = _API_RE.match(path)
        api_path = m.group(2) if m else path
        rec = Recorded(
            method=request.method,
            path=api_path,
            query=dict(request.query),
            json=None,
            files=[],
            headers=dict(request.headers),
            time=self.clock(),
            raw_path=path,
        )
        self.requests.append(rec)
        resp: web.StreamResponse | None
        try:
            await self._read_body(request, rec)
            await self._run_hook(rec)
            resp = self._take_failure(rec)
            if resp is None:
                resp = await self._route(rec, is_api=m is not None)
        except _ApiError as exc:
            resp = self._json(exc.status, exc.body(), rec)
        rec.status = resp.status
        self._notify()
        return resp

    async def _read_body(self, request: web.Request, rec: Recorded) -> None:
        if not request.can_read_body:
            return
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read())
                if part.name == "payload_json":
                    rec.json = self._parse_json(data)
                elif part.filename is not None:
                    ctype = part.headers.get("Content-Type", "application/octet-stream")
                    rec.files.append((part.filename, data, ctype))
                    rec.file_fields.append(part.name or "")
            return
        raw = await request.read()
        if raw:
            rec.json = self._parse_json(raw)

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    async def _run_hook(self, rec: Recorded) -> None:
        for i, (method, prefix, hook) in enumerate(self._hooks):
            if method in ("*", rec.method) and rec.path.startswith(prefix):
                del self._hooks[i]
                held = hook(rec)
                if held is not None:
                    await held
                return

    def _take_failure(self, rec: Recorded) -> web.Response | None:
        for rule in self._failures:
            if rule.method not in ("*", rec.method) or not rec.path.startswith(rule.prefix):
                continue
            if rule.match is not None and not rule.match(rec):
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._failures.remove(rule)
            if rule.status != 429:
                body = rule.body or {"message": f"{rule.status}: Fake failure", "code": 0}
                return self._json(rule.status, body, rec)
            body = rule.body or {
                "message": "You are being rate limited.",
                "retry_after": rule.retry_after,
                "global": rule.global_,
            }
            headers = {
                "Retry-After": str(max(1, math.ceil(rule.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                "X-RateLimit-Bucket": _bucket_for(rec.method, rec.path),
                "X-RateLimit-Scope": "global" if rule.global_ else "user",
                "Via": "1.1 google",
            }
            if rule.global_:
                headers["X-RateLimit-Global"] = "true"
            return _json_response(429, body, headers)
        return None

    def _json(self, status: int, body: Any, rec: Recorded | None = None) -> web.Response:
        headers = {"Via": "1.1 google"}
        if rec is not None and _API_RE.match(rec.raw_path):
            headers.update(
                {
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "49",
                    "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
                    "X-RateLimit-Reset-After": "1.000",
                    "X-RateLimit-Bucket": _bucket_for(rec.method, rec.path),
                }
            )
        if status == 204:
            return web.Response(status=204, headers=headers)
        return _json_response(status, body, headers)

    async def _route(self, rec: Recorded, *, is_api: bool) -> web.StreamResponse:
        if not is_api:
            m = re.fullmatch(r"/(?:proxy/)?attachments/(\d+)/[^/]+", rec.path)
            if rec.method == "GET" and m and m.group(1) in self._files:
                stored = self._files[m.group(1)]
                return web.Response(body=stored.data, content_type=stored.content_type)
            return web.Response(status=404, text="404: Not Found")
        matched_path = False
        for method, pattern, auth, handler in self._routes:
            match = pattern.fullmatch(rec.path)
            if match is None:
                continue
            matched_path = True
            if method != rec.method:
                continue
            if auth and rec.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, 0, "401: Unauthorized")
            return await handler(rec, match)
        if matched_path:
            raise _ApiError(405, 0, "405: Method Not Allowed")
        raise _ApiError(404, 0, "404: Not Found")

    # ------------------------------------------------------------------ REST handlers

    async def _h_users_me(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        return self._json(200, self._users[self.bot_user_id], rec)

    async def _h_user(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        uid = int(m.group(1))
        if uid not in self._users:
            raise _ApiError(404, 10013, "Unknown User")
        return self._json(200, self._public_user(uid), rec)

    async def _h_app(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        bot = self._users[self.bot_user_id]
        owner = next((g.owner_id for g in self._guilds.values()), 1)
        return self._json(
            200,
            {
                "id": str(self.app_id),
                "name": bot["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self._public_user(owner),
                "team": None,
                "flags": 0,
                "bot": self._public_user(self.bot_user_id),
                "rpc_origins": [],
                "redirect_uris": [],
                "tags": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(self._guilds),
                "integration_types_config": {"0": {}},
            },
            rec,
        )

    async def _h_gateway(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        return self._json(200, {"url": self.gateway_url}, rec)

    async def _h_gateway_bot(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        body = {"url": self.gateway_url, "shards": self.recommended_shards}
        return self._json(200, {**body, "session_start_limit": limit}, rec)

    def _token_interaction(self, app_id: str, token: str) -> FakeInteraction:
        if int(app_id) != self.app_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        inter = self._interactions.get(token)
        if inter is None or self.clock() - inter.created_at > INTERACTION_TOKEN_TTL:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        return inter

    async def _h_callback(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        inter = self._interactions_by_id.get(m.group(1))
        if inter is None or inter.token != m.group(2):
            raise _ApiError(404, 10062, "Unknown interaction")
        if inter.acknowledged:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock() - inter.created_at > self.callback_window:
            raise _ApiError(404, 10062, "Unknown interaction")
        body: JSON = rec.json if isinstance(rec.json, dict) else {}
        cb_type = body.get("type")
        data: JSON = body.get("data") or {}
        allowed = {
            APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL, 10, 12},
            MESSAGE_COMPONENT: {
                CB_MESSAGE,
                CB_DEFERRED_MESSAGE,
                CB_DEFERRED_UPDATE,
                CB_UPDATE,
                CB_MODAL,
            },
            AUTOCOMPLETE: {CB_AUTOCOMPLETE},
            MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE},
            PING: {CB_PONG},
        }.get(inter.type, set())
        from_message = inter.type != MODAL_SUBMIT or inter.source_message_id is not None
        if cb_type not in allowed or (
            cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE) and not from_message
        ):
            raise _ApiError(
                400, 50035, "Invalid Form Body", errors={"type": {"_errors": [{"code": "bad"}]}}
            )
        if cb_type == CB_MODAL:
            _validate_modal(data)
        message: JSON | None = None
        if cb_type in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            self._validate_payload(data, len(rec.files), creating=cb_type == CB_MESSAGE)
            msg_type = 20 if inter.type == APPLICATION_COMMAND else 0
            loading = FLAG_LOADING if cb_type == CB_DEFERRED_MESSAGE else 0
            content = data if cb_type == CB_MESSAGE else {"flags": data.get("flags")}
            message = self._new_message(
                inter.channel_id,
                content,
                rec,
                interaction=inter,
                msg_type=msg_type,
                extra_flags=loading,
            )
            inter.original_message_id = message["id"]
            await self._created(message, inter.channel_id)
        elif cb_type in (CB_DEFERRED_UPDATE, CB_UPDATE):
            inter.original_message_id = inter.source_message_id
            message = self._messages.get(inter.source_message_id or "")
            if cb_type == CB_UPDATE and message is not None:
                self._validate_payload(data, len(rec.files), creating=False)
                self._apply_content(message, data, rec)
                message["edited_timestamp"] = self._iso(self.clock())
                await self._edited(message)
        elif cb_type == CB_AUTOCOMPLETE:
            inter.autocomplete_choices = list(data.get("choices") or [])
        elif cb_type == CB_MODAL:
            inter.modal = data
        inter.callbacks.append(body)
        inter.response_type = int(cb_type)
        if not _truthy(rec.query.get("with_response")):
            return self._json(204, None, rec)
        callback: JSON = {"id": inter.id, "type": inter.type}
        resource: JSON = {"type": cb_type}
        if message is not None:
            callback["response_message_id"] = message["id"]
            callback["response_message_loading"] = bool(message["flags"] & FLAG_LOADING)
            callback["response_message_ephemeral"] = bool(message["flags"] & FLAG_EPHEMERAL)
            resource["message"] = copy.deepcopy(message)
        return self._json(200, {"interaction": callback, "resource": resource}, rec)

    async def _h_webhook_execute(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        inter = self._token_interaction(m.group(1), m.group(2))
        payload: JSON = rec.json if isinstance(rec.json, dict) else {}
        self._validate_payload(payload, len(rec.files), creating=True)
        channel_id = inter.channel_id
        if rec.query.get("thread_id"):
            channel_id = self._channel(int(rec.query["thread_id"])).id
        msg = self._new_message(channel_id, payload, rec, interaction=inter)
        inter.followup_message_ids.append(msg["id"])
        await self._created(msg, channel_id)
        if not _truthy(rec.query.get("wait")):
            return self._json(204, None, rec)
        return self._json(200, msg, rec)

    def _webhook_message(self, m: re.Match[str]) -> tuple[FakeInteraction, JSON]:
        inter = self._token_interaction(m.group(1), m.group(2))
        mid = inter.original_message_id if m.group(3) == "@original" else m.group(3)
        own = {inter.original_message_id, *inter.followup_message_ids}
        if mid is None or mid not in own or mid not in self._messages:
            raise _ApiError(404, 10008, "Unknown Message")
        return inter, self._messages[mid]

    async def _h_webhook_get(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        _, msg = self._webhook_message(m)
        return self._json(200, msg, rec)

    async def _h_webhook_edit(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        _, msg = self._webhook_message(m)
        payload: JSON = rec.json if isinstance(rec.json, dict) else {}
        self._validate_payload(payload, len(rec.files), creating=False)
        self._apply_content(msg, payload, rec)
        if msg["flags"] & FLAG_LOADING:
            msg["flags"] &= ~FLAG_LOADING
        else:
            msg["edited_timestamp"] = self._iso(self.clock())
        await self._edited(msg)
        return self._json(200, msg, rec)

    async def _h_webhook_delete(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        inter, msg = self._webhook_message(m)
        self._delete(msg)
        if inter.original_message_id == msg["id"]:
            inter.original_message_id = None
        return self._json(204, None, rec)

    def _delete(self, msg: JSON) -> None:
        mid = str(msg["id"])
        self._messages.pop(mid, None)
        order = self._channel_order.get(int(msg["channel_id"]), [])
        if mid in order:
            order.remove(mid)

    async def _h_channel(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        return self._json(200, self._channel_payload(int(m.group(1))), rec)

    async def _h_history(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cid = self._channel(int(m.group(1))).id
        limit = int(rec.query.get("limit", "50"))
        msgs = [self._messages[mid] for mid in self._channel_order.get(cid, [])]
        if "before" in rec.query:
            msgs = [x for x in msgs if int(x["id"]) < int(rec.query["before"])]
        if "after" in rec.query:
            msgs = [x for x in msgs if int(x["id"]) > int(rec.query["after"])]
        return self._json(200, list(reversed(msgs))[:limit], rec)

    async def _h_create_message(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cid = self._channel(int(m.group(1))).id
        if self._is_denied(cid):
            raise _ApiError(403, 50013, "Missing Permissions")
        payload: JSON = rec.json if isinstance(rec.json, dict) else {}
        self._validate_payload(payload, len(rec.files), creating=True)
        nonce = payload.get("nonce")
        key = (str(self.bot_user_id), str(nonce))
        now = self.clock()
        if nonce is not None and payload.get("enforce_nonce"):
            seen = self._nonces.get(key)
            if seen is not None and now - seen[0] <= NONCE_WINDOW and seen[1] in self._messages:
                return self._json(200, self._messages[seen[1]], rec)
        msg = self._new_message(cid, payload, rec)
        if nonce is not None:
            self._nonces[key] = (now, msg["id"])
        await self._created(msg, cid)
        return self._json(200, msg, rec)

    def _channel_message(self, m: re.Match[str]) -> JSON:
        cid = self._channel(int(m.group(1))).id
        msg = self._messages.get(m.group(2))
        if msg is None or int(msg["channel_id"]) != cid:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    async def _h_get_message(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        return self._json(200, self._channel_message(m), rec)

    async def _h_edit_message(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        msg = self._channel_message(m)
        if msg["author"]["id"] != str(self.bot_user_id):
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload: JSON = rec.json if isinstance(rec.json, dict) else {}
        self._validate_payload(payload, len(rec.files), creating=False)
        self._apply_content(msg, payload, rec)
        msg["edited_timestamp"] = self._iso(self.clock())
        await self._edited(msg)
        return self._json(200, msg, rec)

    async def _h_delete_message(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        self._delete(self._channel_message(m))
        return self._json(204, None, rec)

    async def _h_typing(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        self._channel(int(m.group(1)))
        return self._json(204, None, rec)

    def _can(self, channel_id: int, *bits: int) -> bool:
        """Whether the bot has every one of these permissions in the channel."""
        perms = self._permissions(self.bot_user_id, channel_id)
        return bool(perms & ADMINISTRATOR) or all(perms & bit for bit in bits)

    def _visible_message(self, m: re.Match[str]) -> JSON:
        """A message of the channel that is in it for everyone (not ephemeral)."""
        msg = self._channel_message(m)
        if int(msg.get("flags") or 0) & FLAG_EPHEMERAL:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    async def _h_pins(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cid = self._channel(int(m.group(1))).id
        limit = int(rec.query.get("limit", "50"))
        pins = self._pins.get(cid, [])
        items = [
            {"pinned_at": self._iso(at), "message": self._messages[mid]}
            for mid, at in pins[:limit]
            if mid in self._messages
        ]
        return self._json(200, {"items": items, "has_more": len(pins) > limit}, rec)

    async def _h_pin(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        msg = self._visible_message(m)
        cid = int(m.group(1))
        if not self._can(cid, VIEW_CHANNEL, PIN_MESSAGES):
            raise _ApiError(403, 50013, "Missing Permissions")
        pins = self._pins.setdefault(cid, [])
        if any(mid == msg["id"] for mid, _ in pins):
            return self._json(204, None, rec)
        if len(pins) >= MAX_PINS:
            raise _ApiError(400, 30003, f"Maximum number of pins reached ({MAX_PINS})")
        now = self.clock()
        pins.insert(0, (str(msg["id"]), now))
        msg["pinned"] = True
        await self._edited(msg)
        notice = self._base_message(
            str(self._snowflake()), cid, self._public_user(self.bot_user_id)
        )
        notice["type"] = 6  # CHANNEL_PINNED_MESSAGE: "genrelay pinned a message"
        notice["message_reference"] = {
            "type": 0,
            "message_id": str(msg["id"]),
            "channel_id": str(cid),
            "guild_id": str(self._channel(cid).guild_id),
        }
        await self._created(notice, cid)
        await self._pins_changed(cid, now)
        return self._json(204, None, rec)

    async def _h_unpin(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        msg = self._visible_message(m)
        cid = int(m.group(1))
        if not self._can(cid, VIEW_CHANNEL, PIN_MESSAGES):
            raise _ApiError(403, 50013, "Missing Permissions")
        pins = self._pins.get(cid, [])
        kept = [(mid, at) for mid, at in pins if mid != msg["id"]]
        if len(kept) != len(pins):
            self._pins[cid] = kept
            msg["pinned"] = False
            await self._edited(msg)
            await self._pins_changed(cid, kept[0][1] if kept else None)
        return self._json(204, None, rec)

    async def _pins_changed(self, channel_id: int, last: float | None) -> None:
        await self.dispatch(
            "CHANNEL_PINS_UPDATE",
            {
                "guild_id": str(self._channel(channel_id).guild_id),
                "channel_id": str(channel_id),
                "last_pin_timestamp": self._iso(last) if last is not None else None,
            },
        )

    async def _h_start_thread(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        parent = self._channel(int(m.group(1)))
        msg = self._visible_message(m)
        if parent.type not in (0, 5):  # a text or announcement channel
            raise _ApiError(400, 50024, "Cannot execute action on this channel type")
        if not self._can(parent.id, VIEW_CHANNEL, CREATE_PUBLIC_THREADS):
            raise _ApiError(403, 50013, "Missing Permissions")
        tid = int(msg["id"])  # a thread started from a message takes the message's id
        if msg.get("thread") is not None or tid in self._channels:
            raise _ApiError(400, 160004, "A thread has already been created for this message")
        payload: JSON = rec.json if isinstance(rec.json, dict) else {}
        name = str(payload.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise _bad_form("name")
        archive = payload.get("auto_archive_duration")
        if archive is not None and archive not in THREAD_ARCHIVE_MINUTES:
            raise _bad_form("auto_archive_duration")
        kind = 11 if parent.type == 0 else 10  # public thread, announcement thread
        self._channels[tid] = _Channel(tid, parent.guild_id, name, kind, parent.id)
        self._guilds[parent.guild_id].thread_ids.append(tid)
        thread = self._channel_payload(tid)
        msg["thread"] = thread
        msg["flags"] = int(msg.get("flags") or 0) | FLAG_HAS_THREAD
        await self._edited(msg)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return self._json(201, thread, rec)

    def _command_list(self, m: re.Match[str]) -> tuple[list[JSON], int | None]:
        if int(m.group(1)) != self.app_id:
            raise _ApiError(403, 50001, "Missing Access")
        if m.group(2) is None:
            return self._global_commands, None
        gid = int(m.group(2))
        if gid not in self._guilds:
            raise _ApiError(403, 50001, "Missing Access")
        return self._guild_commands.setdefault(gid, []), gid

    def _make_command(self, spec: JSON, guild_id: int | None, existing: list[JSON]) -> JSON:
        ctype = int(spec.get("type", 1))
        old = next(
            (c for c in existing if c["name"] == spec.get("name") and c["type"] == ctype), None
        )
        cmd: JSON = {
            "id": old["id"] if old else str(self._snowflake()),
            "application_id": str(self.app_id),
            "version": str(self._snowflake()),
            "type": ctype,
            "name": spec.get("name"),
            "name_localizations": spec.get("name_localizations"),
            "description": spec.get("description", ""),
            "description_localizations": spec.get("description_localizations"),
            "options": spec.get("options", []),
            "default_member_permissions": spec.get("default_member_permissions"),
            "dm_permission": spec.get("dm_permission", True),
            "nsfw": spec.get("nsfw", False),
            "contexts": spec.get("contexts"),
            "integration_types": spec.get("integration_types", [0]),
        }
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        return cmd

    async def _h_commands_get(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cmds, _ = self._command_list(m)
        return self._json(200, cmds, rec)

    async def _h_commands_put(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cmds, gid = self._command_list(m)
        specs = rec.json if isinstance(rec.json, list) else []
        new = [self._make_command(s, gid, cmds) for s in specs]
        cmds[:] = new
        return self._json(200, new, rec)

    async def _h_commands_post(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cmds, gid = self._command_list(m)
        spec: JSON = rec.json if isinstance(rec.json, dict) else {}
        cmd = self._make_command(spec, gid, cmds)
        cmds[:] = [c for c in cmds if c["id"] != cmd["id"]] + [cmd]
        return self._json(200, cmd, rec)

    def _command_by_id(self, m: re.Match[str]) -> tuple[list[JSON], JSON]:
        cmds, _ = self._command_list(m)
        cmd = next((c for c in cmds if c["id"] == m.group(3)), None)
        if cmd is None:
            raise _ApiError(404, 10063, "Unknown application command")
        return cmds, cmd

    async def _h_command_get(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        return self._json(200, self._command_by_id(m)[1], rec)

    async def _h_command_delete(self, rec: Recorded, m: re.Match[str]) -> web.Response:
        cmds, cmd = self._command_by_id(m)
        cmds.remove(cmd)
        return self._json(204, None, rec)

    # ------------------------------------------------------------------ gateway server

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        query = dict(request.query)
        compress = query.get("compress") or None
        self.gateway_connections.append(query)
        conn = _Connection(ws, compress, query)
        self._connections.add(conn)
        try:
            if (
                compress not in (None, "zlib-stream", "zstd-stream")
                or query.get("encoding", "json") != "json"
            ):
                await ws.close(code=4002, message=b"Unsupported encoding or compression")
                return ws
            await conn.send(
                {
                    "op": 10,
                    "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["fake-gateway"]},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                await self._on_gateway_payload(conn, payload)
        finally:
            self._connections.discard(conn)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: JSON) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2 and isinstance(data, dict):
            await self._identify(conn, data)
        elif op == 6 and isinstance(data, dict):
            await self._resume(conn, data)
        elif op == 8 and isinstance(data, dict) and conn.session is not None:
            guild = self._guilds.get(int(data.get("guild_id", 0)))
            if guild is not None:
                chunk: JSON = {
                    "guild_id": str(guild.id),
                    "members": [self._member_payload(uid, guild) for uid in self._users],
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "not_found": [],
                }
                if data.get("nonce") is not None:
                    chunk["nonce"] = data["nonce"]
                await conn.session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def _identify(self, conn: _Connection, data: JSON) -> None:
        self.identify_payloads.append(copy.deepcopy(data))
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = _shard_of(data.get("shard"))
        if shard is False:
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        session = _Session(secrets.token_hex(16), shard)
        session.connection = conn
        conn.session = session
        self._sessions[session.session_id] = session
        ready: JSON = {
            "v": 10,
            "user": copy.deepcopy(self._users[self.bot_user_id]),
            "guilds": [
                {"id": str(g), "unavailable": True} for g in self._guilds if session.receives(g)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-gateway"],
        }
        if data.get("shard") is not None:
            ready["shard"] = data["shard"]
        await session.dispatch("READY", ready)
        for guild in list(self._guilds.values()):
            if session.receives(guild.id):
                await session.dispatch("GUILD_CREATE", self._guild_payload(guild))
        self._ready.set()
        self._notify()

    async def _resume(self, conn: _Connection, data: JSON) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.token:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        async with session.lock:
            old = session.connection
            session.connection = conn
            conn.session = session
            seq = int(data.get("seq") or 0)
            async with conn.lock:
                for payload in session.backlog:
                    if int(payload["s"]) > seq:
                        await conn.send_locked(payload)
        if old is not None and old is not conn:
            with contextlib.suppress(Exception):
                await old.ws.close(code=4000)
        await session.dispatch("RESUMED", {"_trace": ["fake-gateway"]})
        self.resumes += 1
        self._notify()
