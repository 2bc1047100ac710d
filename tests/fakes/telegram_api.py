"""A fake Telegram Bot API server for end-to-end tests.

The real python-telegram-bot client talks to it over loopback HTTP::

    async with FakeTelegram() as fake:
        app = (
            ApplicationBuilder()
            .token(fake.token)
            .base_url(fake.api_base)  # PTB appends the token: <api_base><token>/<method>
            .base_file_url(fake.file_base)  # and here: <file_base><token>/<file_path>
            .build()
        )

Protocol notes (what PTB 22 actually sends and needs back):

* Requests are ``POST <base_url><token>/<method>``. Without files the body is
  ``application/x-www-form-urlencoded`` where string values are sent raw and everything else
  (ints, bools, dicts such as ``reply_markup``/``reply_parameters``) is JSON-encoded. With files
  it is ``multipart/form-data``: the same fields plus one part per file, named after the
  parameter (``photo``) or after an ``attach://<name>`` reference (``sendMediaGroup`` media,
  ``thumbnail``).
* Responses are ``{"ok": true, "result": ...}``. Errors are ``{"ok": false, "error_code": N,
  "description": ...}`` with HTTP status N; PTB picks the exception class from the HTTP status
  (401/404 -> InvalidToken, 400 -> BadRequest, 403 -> Forbidden, 409 -> Conflict) and raises
  RetryAfter whenever ``parameters.retry_after`` is present.
* ``getFile`` returns a relative ``file_path``; PTB prefixes it with ``base_file_url + token``.
* One long poll at a time, as Telegram has it: a ``getUpdates`` that comes while another is
  still waiting (two bot instances polling) ends the waiting one with 409 "Conflict:
  terminated by other getUpdates request"; each such conflict is kept in ``poll_conflicts``.

The fake is strict where Telegram is strict, to catch adapter bugs early: sending to an
unregistered chat is "chat not found", replying to an unknown message fails unless
``allow_sending_without_reply``, ``callback_data`` over 64 bytes is ``BUTTON_DATA_INVALID``,
identical edits are "message is not modified", an edit without ``reply_markup`` removes the
inline keyboard, and ``setMessageReaction`` takes one ``{"type": "emoji", ...}`` reaction on a
message that exists in that chat (recorded in ``reactions``). A bot edits only its own
messages ("message can't be edited"); ``answerCallbackQuery`` takes at most 200 characters
of text (MESSAGE_TOO_LONG). ``sendMediaGroup`` takes 2-10 items, each with its own caption,
documents only with documents and audio only with audio, and no ``reply_markup`` (an album
has no keyboard: the parameter does not exist there, so it is ignored). ``pinChatMessage`` and
``unpinChatMessage`` work in a private chat, and elsewhere only when the bot is an
administrator of the chat (``chat_admins``/``chat_creators`` hold ``bot_id``), else "not enough
rights to manage pinned messages in the chat"; a pin posts a service message
(``pinned_message``) and is recorded in ``pinned`` (``getChat`` shows the newest).

Webhooks behave as Telegram documents them: ``setWebhook`` takes an HTTPS ``url`` (else "bad
webhook"), a ``secret_token`` of 1-256 ``A-Za-z0-9_-`` characters and ``allowed_updates`` (kept
from the last call when not given); while a webhook is set, ``getUpdates`` answers 409 and
every pushed update is POSTed to the URL as JSON, with the secret in
``X-Telegram-Bot-Api-Secret-Token``, again and again until a 2xx answer (``webhook_retry_s``
apart, up to ``webhook_attempts``); it is then forgotten. ``webhook_forward`` plays the load
balancer: ``"http://127.0.0.1:PORT"`` receives the URL's path there. ``webhook_copies = 2``
delivers each update twice (Telegram may). Every POST is in ``webhook_posts``.
``deleteWebhook`` goes back to getUpdates; pending updates stay (unless
``drop_pending_updates``).

Telegram's flood limits are enforced only when asked (``FakeTelegram(limits=RateLimits())`` or
``fake.limits = RateLimits()``; off by default): see ``RateLimits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import itertools
import json
import math
import mimetypes
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import BodyPartReader, hdrs, web

JSONDict = dict[str, Any]
FilePart = tuple[str, bytes, str]
"""An uploaded file as received: (filename, data, content_type)."""

_Handler = Callable[[JSONDict, dict[str, FilePart]], Awaitable[Any]]
CallHook = Callable[["Call"], Awaitable[None] | None]
"""Run on a request once it has been read, before it is handled (see ``on_next``)."""

# Form fields whose raw value is a plain string. Everything else is JSON-decoded when possible,
# mirroring PTB's encoding (RequestParameter.json_value: str as-is, the rest json.dumps'ed).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "file_id",
        "url",
        "secret_token",
        "action",
        "language_code",
        "photo",
        "video",
        "document",
        "animation",
        "thumbnail",
    }
)

# The parameter carrying the media for each send method.
_MEDIA_FIELDS = {
    "sendPhoto": "photo",
    "sendVideo": "video",
    "sendDocument": "document",
    "sendAnimation": "animation",
}

_ADMIN_RIGHTS: JSONDict = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_pin_messages": True,
    "can_manage_topics": True,
}

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: injected failure",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)

# A /command at the start of the text or after whitespace, optionally addressed to a bot.
_COMMAND_RE = re.compile(r"(?:^|(?<=\s))/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,32})?")
_BOT_COMMAND_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200  # answerCallbackQuery's text: "0-200 characters"
MAX_BOT_REACTIONS = 1  # a bot (not premium) sets at most one reaction on a message
PHOTO_SIZES = ((320, 240), (1280, 960))
"""(width, height) of the PhotoSize entries built for every photo, smallest first."""


@dataclass(frozen=True)
class WebhookPost:
    """One POST of an update to the webhook: its answer's status (0: no answer)."""

    update_id: int
    url: str
    status: int
    secret: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


_WEBHOOK_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass
class Call:
    """One request the fake received."""

    method: str
    params: JSONDict
    files: dict[str, FilePart]
    time: float
    status: int = 200
    error: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    @property
    def upload(self) -> FilePart | None:
        """The uploaded media file of a sendPhoto/sendVideo/sendDocument/sendAnimation call."""
        field = _MEDIA_FIELDS.get(self.method)
        if field is None:
            return None
        if field in self.files:
            return self.files[field]
        value = self.params.get(field)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.files.get(value.removeprefix("attach://"))
        return None


# What Telegram counts as a message for its flood limits (weight 1 each; sendMediaGroup
# counts one per item). deleteMessage counts toward the bot-wide limit when
# RateLimits.count_deletes; reactions, chat actions, callback answers, getUpdates, getFile
# and downloads never count.
_MESSAGE_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendVideo",
        "sendDocument",
        "sendAnimation",
        "sendAudio",
        "sendVoice",
        "sendVideoNote",
        "sendSticker",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendDice",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        # A pin posts a service message in the chat; Telegram does not say whether it
        # counts, so the fake counts it (never more lenient than Telegram may be).
        "pinChatMessage",
    }
)


@dataclass(frozen=True)
class RateLimits:
    """Telegram's flood limits, as the fake enforces them: sliding windows (a log of the
    moments messages were admitted, not token buckets).

    Telegram's Bot FAQ ("My bot is hitting limits, how do I avoid this?",
    https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this): avoid
    more than one message a second in a single chat, "no more than 20 messages per minute"
    in a group, and "not be able to send more than about 30 messages per second" in bulk
    notifications. Beyond them Telegram answers 429 with ``ResponseParameters.retry_after``,
    "the number of seconds left to wait before the request can be repeated"
    (https://core.telegram.org/bots/api#responseparameters).

    The fake admits a message when, counting it, at most ``bot_per_window`` messages
    (every chat) fall within the last ``bot_window_s`` and, in a group (a chat whose id is
    negative), at most ``group_per_window`` within the last ``group_window_s``. A message
    refused by either window is counted by neither and answered HTTP 429
    ``{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
    "parameters": {"retry_after": N}}``, N the whole seconds (at least 1, rounded up) until
    enough of the window has slid past. The one-a-second rule for a single private chat is
    not enforced (Telegram tolerates short bursts there). What counts: ``_MESSAGE_METHODS``
    (sendMediaGroup one per item), and ``deleteMessage`` toward the bot-wide window when
    ``count_deletes``.
    """

    bot_per_window: int = 30
    bot_window_s: float = 1.0
    group_per_window: int = 20
    group_window_s: float = 60.0
    count_deletes: bool = True


class _SlidingWindow:
    """The moments messages were admitted, oldest first, within the last `span` seconds."""

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        self.span = span
        self._times: deque[float] = deque()

    def wait(self, now: float, weight: int) -> float:
        """Seconds until `weight` more messages fit (0: they fit now)."""
        while self._times and self._times[0] <= now - self.span:
            self._times.popleft()
        excess = len(self._times) + weight - self.limit
        if excess <= 0:
            return 0.0
        if excess > len(self._times):  # more than the whole window at once: never fits
            return self.span
        return self._times[excess - 1] + self.span - now

    def admit(self, now: float, weight: int) -> None:
        self._times.extend([now] * weight)


@dataclass
class StoredFile:
    """A file the fake can serve through getFile and the file download endpoint."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_size: int
    mime_type: str
    file_path: str
    file_name: str | None = None


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None


class BotApiError(Exception):
    """Raised by handlers; becomes a Bot API error response."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def response(self) -> web.Response:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return web.json_response(body, status=self.status)


class _Throttled(BotApiError):
    """A 429 answered by the fake's own flood limits (not one scripted with fail_next)."""


def _bad_request(description: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {description}")


def _utf16_len(text: str) -> int:
    """Telegram measures entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def command_entities(text: str) -> list[JSONDict]:
    """The ``bot_command`` entities Telegram attaches to ``text``."""
    return [
        {
            "type": "bot_command",
            "offset": _utf16_len(text[: match.start()]),
            "length": _utf16_len(match.group(0)),
        }
        for match in _COMMAND_RE.finditer(text)
    ]


def _decode_form_value(key: str, raw: str) -> Any:
    if key in _STRING_PARAMS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _int_param(params: JSONDict, key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None:
        raise _bad_request(f"parameter {key!r} is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad_request(f"invalid {key} specified") from None


def _inline_markup(params: JSONDict) -> JSONDict | None:
    """Validate ``reply_markup``; return it if it is an inline keyboard (the only kind echoed)."""
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return None
    for row in rows:
        for button in row:
            if not button.get("text"):
                raise _bad_request("BUTTON_TEXT_INVALID")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
    return markup


def _reply_stub(message: JSONDict) -> JSONDict:
    """The copy of a message embedded as ``reply_to_message`` (Telegram does not nest these)."""
    stub = copy.deepcopy(message)
    stub.pop("reply_to_message", None)
    return stub


def _error_json(status: int, description: str) -> web.Response:
    return BotApiError(status, description).response()


class FakeTelegram:
    """A loopback Telegram Bot API server with scripted users, chats and updates."""

    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "genrelay_bot",
        bot_id: int = 123456,
        limits: RateLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        # Telegram's flood limits, enforced when set (see RateLimits); `clock` times the
        # sliding windows and every Call.
        self.limits = limits
        self.clock = clock
        # Every request the flood limits answered 429 (also in `calls`, failed).
        self.throttled: list[Call] = []
        self._bot_window: _SlidingWindow | None = None
        self._group_windows: dict[int, _SlidingWindow] = {}
        self.bot_username = bot_username
        self.bot_id = bot_id
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "GenRelay",
            "username": bot_username,
        }

        self.calls: list[Call] = []
        self.chat_admins: dict[int, set[int]] = {}
        self.chat_creators: dict[int, int] = {}
        self.users: dict[int, JSONDict] = {}
        self.chats: dict[int, JSONDict] = {}
        self.messages: dict[tuple[int, int], JSONDict] = {}
        self.files: dict[str, StoredFile] = {}
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        # The bot's reaction on each message it reacted to: (chat_id, message_id) -> list.
        self.reactions: dict[tuple[int, int], list[JSONDict]] = {}
        # The pinned messages of each chat, oldest pin first.
        self.pinned: dict[int, list[int]] = {}
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_allowed_updates: list[str] | None = None
        # Where webhook POSTs really go: this base + the URL's path (a load balancer).
        self.webhook_forward: str | None = None
        self.webhook_copies = 1  # each update POSTed this many times (each until a 2xx)
        self.webhook_retry_s = 0.05
        self.webhook_attempts = 100
        self.webhook_posts: list[WebhookPost] = []
        self._webhook_task: asyncio.Task[None] | None = None
        # Upper bound on a getUpdates long poll, whatever timeout the client asks for.
        self.long_poll_cap = 1.0
        # Telegram refuses getFile above 20 MB ("file is too big"); None = no limit enforced.
        self.max_download_size: int | None = None

        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        # getUpdates calls still waiting (by number), and those a later one terminated.
        self._polls_waiting: set[int] = set()
        self._polls_terminated: set[int] = set()
        self._poll_numbers = itertools.count(1)
        self.poll_conflicts = 0
        self._next_message_id: dict[int, int] = {}
        self._file_counter = itertools.count(1)
        self._media_group_counter = itertools.count(1)
        self._callback_counter = itertools.count(1)
        self._callback_queries: dict[str, JSONDict] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._hooks: dict[str, deque[CallHook]] = {}
        # Replaced (after being set) whenever an update is pushed / a call is recorded.
        self._update_signal = asyncio.Event()
        self._call_signal = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendPhoto": functools.partial(self._send_media, "photo"),
            "sendVideo": functools.partial(self._send_media, "video"),
            "sendDocument": functools.partial(self._send_media, "document"),
            "sendAnimation": functools.partial(self._send_media, "animation"),
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "setMessageReaction": self._set_message_reaction,
            "getFile": self._get_file,
            "answerCallbackQuery": self._answer_callback_query,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChat": self._get_chat,
            "pinChatMessage": self._pin_chat_message,
            "unpinChatMessage": self._unpin_chat_message,
        }
        # Bot API method names are case-insensitive.
        self._handlers = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_download)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        self._webhook_task = asyncio.create_task(self._deliver_webhooks())

    async def close(self) -> None:
        self._closing = True
        self._update_signal.set()  # release pending long polls
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ------------------------------------------------------------------ HTTP layer

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["method"]
        entry = self._handlers.get(name.lower())
        method = entry[0] if entry else name
        call = Call(method=method, params={}, files={}, time=self.clock())
        try:
            if request.match_info["token"] != self.token:
                raise BotApiError(401, "Unauthorized")
            if entry is None:
                raise BotApiError(404, "Not Found")
            call.params, call.files = await self._read_params(request)
            if (hooks := self._hooks.get(method.lower())) and inspect.isawaitable(
                held := hooks.popleft()(call)
            ):
                await held
            self._raise_injected_failure(method)
            self._enforce_limits(method, call.params)
            call.result = await entry[1](call.params, call.files)
        except BotApiError as exc:
            call.status, call.error = exc.status, exc.description
            if isinstance(exc, _Throttled):
                self.throttled.append(call)
            return exc.response()
        except asyncio.CancelledError:
            call.status, call.error = 499, "client disconnected"
            raise
        finally:
            self._record(call)
        return web.json_response({"ok": True, "result": call.result})

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        file_path = request.match_info["file_path"]
        call = Call("downloadFile", {"file_path": file_path}, {}, self.clock())
        try:
            if request.match_info["token"] != self.token:
                call.status, call.error = 401, "Unauthorized"
                return _error_json(401, "Unauthorized")
            stored = next((f for f in self.files.values() if f.file_path == file_path), None)
            if stored is None:
                call.status, call.error = 404, "Not Found"
                return _error_json(404, "Not Found")
            call.result = len(stored.data)
            return web.Response(body=stored.data, content_type=stored.mime_type)
        finally:
            self._record(call)

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, dict[str, FilePart]]:
        params: JSONDict = {k: _decode_form_value(k, v) for k, v in request.query.items()}
        files: dict[str, FilePart] = {}
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad_request("can't parse JSON body") from None
            if not isinstance(body, dict):
                raise _bad_request("JSON body must be an object")
            params.update(body)
        elif request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                    files[part.name] = (part.filename, bytes(await part.read()), content_type)
                else:
                    params[part.name] = _decode_form_value(part.name, await part.text())
        elif request.body_exists:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_form_value(key, value)
        return params, files

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._call_signal.set()
        self._call_signal = asyncio.Event()

    def _raise_injected_failure(self, method: str) -> None:
        queue = self._failures.get(method.lower())
        if not queue:
            return
        failure = queue.popleft()
        parameters = None
        if failure.status == 429 and failure.retry_after is not None:
            parameters = {"retry_after": failure.retry_after}
        raise BotApiError(failure.status, failure.description, parameters)

    def _message_weight(self, method: str, params: JSONDict) -> tuple[int, bool]:
        """How many messages a request counts as, and whether toward a group's window."""
        limits = self.limits
        assert limits is not None
        if method == "deleteMessage":
            return (1 if limits.count_deletes else 0), False
        if method not in _MESSAGE_METHODS:
            return 0, False
        if method == "sendMediaGroup":
            media = params.get("media")
            return (len(media) if isinstance(media, list) and media else 1), True
        return 1, True

    def _enforce_limits(self, method: str, params: JSONDict) -> None:
        """Admit a message into the sliding windows, or raise 429 (see RateLimits)."""
        limits = self.limits
        if limits is None:
            return
        weight, per_group = self._message_weight(method, params)
        if weight == 0:
            return
        if self._bot_window is None or (
            (self._bot_window.limit, self._bot_window.span)
            != (limits.bot_per_window, limits.bot_window_s)
        ):
            self._bot_window = _SlidingWindow(limits.bot_per_window, limits.bot_window_s)
        windows = [self._bot_window]
        chat_id: int | None = None
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(params.get("chat_id"))  # type: ignore[arg-type]
        if per_group and chat_id is not None and chat_id < 0:
            group = self._group_windows.get(chat_id)
            if group is None or (group.limit, group.span) != (
                limits.group_per_window,
                limits.group_window_s,
            ):
                group = _SlidingWindow(limits.group_per_window, limits.group_window_s)
                self._group_windows[chat_id] = group
            windows.append(group)
        now = self.clock()
        wait = max(w.wait(now, weight) for w in windows)
        if wait > 0:
            retry_after = max(math.ceil(wait), 1)
            raise _Throttled(
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        for window in windows:
            window.admit(now, weight)

    # ------------------------------------------------------------------ test assertions

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail with a Bot API error.

        For 429 the response carries ``parameters.retry_after`` (PTB raises RetryAfter) unless
        ``retry_after`` is None. Failed calls are recorded (``Call.failed``) and have no effect.
        """
        if description is None:
            if status == 429:
                description = "Too Many Requests"
                if retry_after is not None:
                    description += f": retry after {retry_after}"
            else:
                description = _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")
        queue = self._failures.setdefault(method.lower(), deque())
        queue.extend(_Failure(status, description, retry_after) for _ in range(count))

    def clear_failures(self) -> None:
        """Call off every injected failure still waiting: the API answers again."""
        self._failures.clear()

    def on_next(self, method: str, hook: CallHook) -> None:
        """Run ``hook(call)`` on the next ``method`` request, once it has been read and before
        it is handled (and before a ``fail_next`` failure); an awaitable it returns is awaited
        first (a slow answer). The request is then handled as usual: a hook that kills the bot
        models a request Telegram acted on whose answer never arrived (one that kills after a
        wait: the bot died while waiting). Hooks of one method run one per request, in order."""
        self._hooks.setdefault(method.lower(), deque()).append(hook)

    def sent(self, method: str | None = None, chat_id: int | str | None = None) -> list[Call]:
        """Successful calls, optionally filtered by method and ``chat_id``."""
        return [
            call
            for call in self.calls
            if call.ok
            and (method is None or call.method == method)
            and (chat_id is None or str(call.chat_id) == str(chat_id))
        ]

    def _matching(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None,
        since: int,
        ok: bool | None,
    ) -> list[Call]:
        return [
            call
            for call in self.calls[since:]
            if call.method == method
            and (ok is None or call.ok == ok)
            and (predicate is None or predicate(call))
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int = 0,
        n: int = 1,
        ok: bool | None = None,
    ) -> Call:
        """Return the ``n``-th call of ``method`` (from ``calls[since:]``) matching ``predicate``.

        Already recorded calls count, so use ``since=len(fake.calls)`` to wait for a new one.
        ``ok=True``/``False`` restricts to successful/failed calls. Raises AssertionError on
        timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = self._matching(method, predicate, since, ok)
            if len(matches) >= n:
                return matches[n - 1]
            signal = self._call_signal
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(c.method, c.status, c.params) for c in self.calls[since:]]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {method} match #{n} "
                    f"({len(matches)} found); calls: {seen}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    # ------------------------------------------------------------------ scripted input

    def user(self, id: int, first_name: str, username: str | None = None) -> JSONDict:
        user: JSONDict = {"id": id, "is_bot": False, "first_name": first_name}
        if username is not None:
            user["username"] = username
        self.users[id] = user
        return copy.deepcopy(user)

    def group(self, id: int, title: str, is_forum: bool = False) -> JSONDict:
        chat: JSONDict = {"id": id, "type": "supergroup", "title": title}
        if is_forum:
            chat["is_forum"] = True
        self.chats[id] = chat
        return copy.deepcopy(chat)

    def private_chat(self, user: JSONDict) -> JSONDict:
        chat: JSONDict = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        self.users.setdefault(user["id"], copy.deepcopy(user))
        self.chats[user["id"]] = chat
        return copy.deepcopy(chat)

    def add_file(
        self, data: bytes, *, file_size: int | None = None, mime_type: str = "image/jpeg"
    ) -> str:
        """Register downloadable bytes; ``file_size`` may lie (reported, not served)."""
        folder = "photos" if mime_type.startswith("image/") else "documents"
        if mime_type.startswith("video/"):
            folder = "videos"
        return self._register_file(data, mime_type=mime_type, folder=folder, size=file_size).file_id

    def push_update(self, update: JSONDict) -> JSONDict:
        """Queue an update for getUpdates (assigning ``update_id`` if missing) and return it."""
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"] + 1)
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            if key in update:
                self._remember(update[key])
        if "callback_query" in update:
            self._callback_queries[update["callback_query"]["id"]] = update["callback_query"]
        self._updates.append(copy.deepcopy(update))
        self._signal_updates()
        return update

    def _signal_updates(self) -> None:
        self._update_signal.set()
        self._update_signal = asyncio.Event()

    # ------------------------------------------------------------------ webhook delivery

    async def _deliver_webhooks(self) -> None:
        """While a webhook is set, POST each pending update to it, oldest first."""
        async with aiohttp.ClientSession() as session:
            while not self._closing:
                signal = self._update_signal
                if self.webhook_url and self._updates:
                    update = self._updates[0]
                    settled = True
                    if self._webhook_wants(update):
                        for _ in range(self.webhook_copies):
                            settled = await self._post_update(session, update) and settled
                    if settled:  # else the webhook was deleted: kept for getUpdates
                        with contextlib.suppress(ValueError):  # or dropped meanwhile
                            self._updates.remove(update)
                    continue
                await signal.wait()

    def _webhook_wants(self, update: JSONDict) -> bool:
        allowed = self.webhook_allowed_updates
        return not allowed or any(kind in update for kind in allowed)

    def webhook_target(self) -> str:
        """Where a POST for the webhook goes (through `webhook_forward` when set)."""
        if self.webhook_forward is None:
            return self.webhook_url
        parts = urllib.parse.urlsplit(self.webhook_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.webhook_forward.rstrip("/") + path

    async def _post_update(self, session: aiohttp.ClientSession, update: JSONDict) -> bool:
        """POST it until a 2xx answer, or give up after `webhook_attempts` (Telegram: "a
        reasonable number of attempts"): True; False when the webhook was deleted first."""
        for _ in range(self.webhook_attempts):
            if not self.webhook_url:
                return False
            url, secret = self.webhook_target(), self.webhook_secret
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
            try:
                async with session.post(url, json=update, headers=headers) as response:
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            self.webhook_posts.append(WebhookPost(update["update_id"], url, status, secret))
            if 200 <= status < 300:
                return True
            await asyncio.sleep(self.webhook_retry_s)
        return True

    def send_text(
        self,
        chat: JSONDict,
        user: JSONDict,
        text: str,
        *,
        reply_to: JSONDict | None = None,
        thread_id: int | None = None,
        sender_chat: JSONDict | None = None,
    ) -> JSONDict:
        """Push a text message from ``user``; returns the message. ``sender_chat`` posts on
        behalf of a chat (an anonymous admin: the group itself, with GroupAnonymousBot as
        ``from``)."""
        message = self._user_message(chat, user, reply_to=reply_to, thread_id=thread_id)
        if sender_chat is not None:
            message["sender_chat"] = copy.deepcopy(sender_chat)
        message["text"] = text
        if entities := command_entities(text):
            message["entities"] = entities
        self.push_update({"message": message})
        return message

    def send_photo(
        self,
        chat: JSONDict,
        user: JSONDict,
        data: bytes,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        thread_id: int | None = None,
        file_size: int | None = None,
        reply_to: JSONDict | None = None,
    ) -> JSONDict:
        """Push a photo message (sizes from PHOTO_SIZES, all serving ``data``)."""
        message = self._user_message(chat, user, reply_to=reply_to, thread_id=thread_id)
        stored = self._register_file(data, mime_type="image/jpeg", folder="photos", size=file_size)
        message["photo"] = self._photo_sizes(stored)
        self._add_caption(message, caption, media_group_id)
        self.push_update({"message": message})
        return message

    def send_document(
        self,
        chat: JSONDict,
        user: JSONDict,
        data: bytes,
        *,
        mime_type: str = "application/octet-stream",
        file_name: str | None = None,
        caption: str | None = None,
        media_group_id: str | None = None,
        thread_id: int | None = None,
        file_size: int | None = None,
        reply_to: JSONDict | None = None,
    ) -> JSONDict:
        """Push a document message (e.g. an uncompressed image: ``mime_type="image/png"``)."""
        message = self._user_message(chat, user, reply_to=reply_to, thread_id=thread_id)
        if file_name is None:
            file_name = "file" + (mimetypes.guess_extension(mime_type) or ".bin")
        stored = self._register_file(
            data, mime_type=mime_type, folder="documents", size=file_size, file_name=file_name
        )
        message["document"] = self._document_json(stored)
        self._add_caption(message, caption, media_group_id)
        self.push_update({"message": message})
        return message

    def press_button(self, chat: JSONDict, user: JSONDict, message: JSONDict, data: str) -> str:
        """Push a callback_query for an inline button of ``message``; returns the query id."""
        current = self.messages.get((chat["id"], message["message_id"]), message)
        rows = (current.get("reply_markup") or {}).get("inline_keyboard", [])
        if data not in [button.get("callback_data") for row in rows for button in row]:
            raise ValueError(f"message {message['message_id']} has no button with data {data!r}")
        query_id = f"cbq-{next(self._callback_counter)}"
        query: JSONDict = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "chat_instance": f"instance{chat['id']}",
            "message": copy.deepcopy(current),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query_id

    def _user_message(
        self,
        chat: JSONDict,
        user: JSONDict,
        *,
        reply_to: JSONDict | None,
        thread_id: int | None,
    ) -> JSONDict:
        self.chats.setdefault(chat["id"], copy.deepcopy(chat))
        self.users.setdefault(user["id"], copy.deepcopy(user))
        message: JSONDict = {
            "message_id": self._new_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": copy.deepcopy(chat),
            "from": copy.deepcopy(user),
        }
        if thread_id is None and reply_to is not None and chat.get("is_forum"):
            thread_id = reply_to.get("message_thread_id")
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        if reply_to is not None:
            target = self.messages.get((chat["id"], reply_to["message_id"]), reply_to)
            message["reply_to_message"] = _reply_stub(target)
        return message

    @staticmethod
    def _add_caption(message: JSONDict, caption: str | None, media_group_id: str | None) -> None:
        if caption is not None:
            message["caption"] = caption
            if entities := command_entities(caption):
                message["caption_entities"] = entities
        if media_group_id is not None:
            message["media_group_id"] = media_group_id

    # ------------------------------------------------------------------ state helpers

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _remember(self, message: JSONDict) -> None:
        chat = message["chat"]
        self.chats.setdefault(chat["id"], copy.deepcopy(chat))
        if "from" in message:
            self.users.setdefault(message["from"]["id"], copy.deepcopy(message["from"]))
        message_id = message["message_id"]
        self._next_message_id[chat["id"]] = max(
            self._next_message_id.get(chat["id"], 1), message_id + 1
        )
        self.messages[(chat["id"], message_id)] = copy.deepcopy(message)

    def _register_file(
        self,
        data: bytes,
        *,
        mime_type: str,
        folder: str,
        size: int | None = None,
        file_name: str | None = None,
    ) -> StoredFile:
        n = next(self._file_counter)
        extension = mimetypes.guess_extension(mime_type) or ".bin"
        stored = StoredFile(
            file_id=f"fake-file-id-{n}",
            file_unique_id=f"fake-unique-{n}",
            data=data,
            file_size=len(data) if size is None else size,
            mime_type=mime_type,
            file_path=f"{folder}/file_{n}{extension}",
            file_name=file_name,
        )
        self.files[stored.file_id] = stored
        return stored

    def _photo_sizes(self, stored: StoredFile) -> list[JSONDict]:
        """PhotoSize list, smallest first; the largest entry is ``stored`` itself."""
        sizes: list[JSONDict] = []
        for index, (width, height) in enumerate(PHOTO_SIZES):
            is_largest = index == len(PHOTO_SIZES) - 1
            size_file = stored
            if not is_largest:
                size_file = self._register_file(
                    stored.data, mime_type="image/jpeg", folder="photos"
                )
            sizes.append(
                {
                    "file_id": size_file.file_id,
                    "file_unique_id": size_file.file_unique_id,
                    "width": width,
                    "height": height,
                    "file_size": size_file.file_size,
                }
            )
        return sizes

    @staticmethod
    def _document_json(stored: StoredFile) -> JSONDict:
        document: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "mime_type": stored.mime_type,
            "file_size": stored.file_size,
        }
        if stored.file_name is not None:
            document["file_name"] = stored.file_name
        return document

    @staticmethod
    def _video_json(stored: StoredFile, params: JSONDict) -> JSONDict:
        video = FakeTelegram._document_json(stored)
        video["width"] = int(params.get("width") or 1280)
        video["height"] = int(params.get("height") or 720)
        video["duration"] = int(params.get("duration") or 1)
        return video

    def _user_for(self, user_id: int) -> JSONDict:
        if user_id == self.bot_id:
            return copy.deepcopy(self.bot_user)
        if user_id in self.users:
            return copy.deepcopy(self.users[user_id])
        return {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}

    def _chat_for(self, chat_id: Any) -> JSONDict:
        """Resolve a ``chat_id`` parameter (int or "@username") to a registered chat."""
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            for chat in self.chats.values():
                if chat.get("username") == chat_id[1:]:
                    return copy.deepcopy(chat)
            raise _bad_request("chat not found")
        try:
            numeric_id = int(chat_id)
        except (TypeError, ValueError):
            raise _bad_request("chat not found") from None
        if numeric_id in self.chats:
            return copy.deepcopy(self.chats[numeric_id])
        if numeric_id in self.users:
            raise BotApiError(403, "Forbidden: bot can't initiate conversation with a user")
        raise _bad_request("chat not found")

    def _stored_message(self, params: JSONDict, action: str) -> JSONDict:
        chat = self._chat_for(params.get("chat_id"))
        message_id = _int_param(params, "message_id")
        message = self.messages.get((chat["id"], message_id))
        if message is None:
            raise _bad_request(f"message to {action} not found")
        return message

    def _bot_message(self, chat: JSONDict, params: JSONDict) -> JSONDict:
        """A new message from the bot with the fields common to all send methods."""
        message: JSONDict = {
            "message_id": 0,  # assigned in _store, once the request is known to be valid
            "date": int(time.time()),
            "chat": chat,
            "from": copy.deepcopy(self.bot_user),
        }
        if (thread_id := params.get("message_thread_id")) is not None:
            message["message_thread_id"] = int(thread_id)
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        if (target := self._reply_target(chat["id"], params)) is not None:
            message["reply_to_message"] = _reply_stub(target)
        if (markup := _inline_markup(params)) is not None:
            message["reply_markup"] = markup
        return message

    def _reply_target(self, chat_id: int, params: JSONDict) -> JSONDict | None:
        reply = params.get("reply_parameters")
        if reply is None and params.get("reply_to_message_id") is not None:
            reply = {
                "message_id": params["reply_to_message_id"],
                "allow_sending_without_reply": params.get("allow_sending_without_reply", False),
            }
        if reply is None:
            return None
        if not isinstance(reply, dict) or "message_id" not in reply:
            raise _bad_request("can't parse reply parameters JSON object")
        target = self.messages.get((chat_id, int(reply["message_id"])))
        if target is None and not reply.get("allow_sending_without_reply"):
            raise _bad_request("message to be replied not found")
        return target

    def _store(self, message: JSONDict) -> JSONDict:
        chat_id = message["chat"]["id"]
        message["message_id"] = self._new_message_id(chat_id)
        self.messages[(chat_id, message["message_id"])] = copy.deepcopy(message)
        return message

    def _resolve_input_file(
        self, kind: str, value: Any, files: dict[str, FilePart], direct_part: str | None
    ) -> StoredFile:
        """Turn an InputFile parameter (upload, attach://, file_id or URL) into a StoredFile."""
        part: FilePart | None = None
        if direct_part is not None and direct_part in files:
            part = files[direct_part]
        elif isinstance(value, str) and value.startswith("attach://"):
            part = files.get(value.removeprefix("attach://"))
            if part is None:
                raise _bad_request(f"file {value} not found in the request")
        elif isinstance(value, str) and value in self.files:
            return self.files[value]
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            mime = mimetypes.guess_type(value)[0] or "application/octet-stream"
            return self._register_file(b"", mime_type=mime, folder=f"{kind}s")
        elif value is None:
            raise _bad_request(f"there is no {kind} in the request")
        else:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        filename, data, content_type = part
        mime = "image/jpeg" if kind == "photo" else content_type  # Telegram re-encodes photos
        return self._register_file(data, mime_type=mime, folder=f"{kind}s", file_name=filename)

    def _media_fields(self, kind: str, stored: StoredFile, params: JSONDict) -> JSONDict:
        if kind == "photo":
            return {"photo": self._photo_sizes(stored)}
        if kind == "video":
            return {"video": self._video_json(stored, params)}
        if kind == "animation":
            # Telegram also fills `document` for animations, for older clients.
            return {
                "animation": self._video_json(stored, params),
                "document": self._document_json(stored),
            }
        return {"document": self._document_json(stored)}

    @staticmethod
    def _caption_fields(params: JSONDict) -> JSONDict:
        caption = params.get("caption")
        if caption is None or caption == "":
            return {}
        if len(str(caption)) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        fields: JSONDict = {"caption": str(caption)}
        if params.get("caption_entities"):
            fields["caption_entities"] = params["caption_entities"]
        return fields

    # ------------------------------------------------------------------ Bot API methods

    async def _get_me(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSONDict, files: dict[str, FilePart]) -> list[JSONDict]:
        if self.webhook_url:
            raise BotApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _int_param(params, "offset", 0)
        limit = max(1, min(100, _int_param(params, "limit", 100)))
        wait = min(float(params.get("timeout") or 0), self.long_poll_cap)
        # An update is confirmed (dropped) once getUpdates is called with a higher offset;
        # a negative offset keeps only the last -offset updates.
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

        if self._polls_waiting:  # another instance is polling: Telegram ends its poll
            self._polls_terminated |= self._polls_waiting
            self.poll_conflicts += len(self._polls_waiting)
            self._wake_polls()
        number = next(self._poll_numbers)
        self._polls_waiting.add(number)
        try:
            await self._long_poll(number, wait)
        finally:
            self._polls_waiting.discard(number)
        if number in self._polls_terminated:
            self._polls_terminated.discard(number)
            raise BotApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        return copy.deepcopy(self._updates[:limit])

    async def _long_poll(self, number: int, wait: float) -> None:
        """Until there are updates, `wait` passed, the fake closes or another poll came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self._updates and not self._closing and number not in self._polls_terminated:
            signal = self._update_signal
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    def _wake_polls(self) -> None:
        self._update_signal.set()
        self._update_signal = asyncio.Event()

    async def _delete_webhook(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        self.webhook_url, self.webhook_secret = "", None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _set_webhook(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        url = str(params.get("url") or "")
        if not url:  # an empty URL removes the webhook
            return await self._delete_webhook(params, files)
        if not url.startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _WEBHOOK_SECRET_RE.match(str(secret)):
            raise _bad_request("secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if allowed is not None:
            self.webhook_allowed_updates = list(allowed)
        self.webhook_url, self.webhook_secret = url, (str(secret) if secret else None)
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self._signal_updates()  # pending updates now go to the webhook
        return True

    async def _get_webhook_info(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        info: JSONDict = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url and self.webhook_allowed_updates:
            info["allowed_updates"] = list(self.webhook_allowed_updates)
        return info

    @staticmethod
    def _commands_key(params: JSONDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not _BOT_COMMAND_NAME_RE.match(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    async def _get_my_commands(
        self, params: JSONDict, files: dict[str, FilePart]
    ) -> list[JSONDict]:
        return copy.deepcopy(self.commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _send_message(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise _bad_request("message text is empty")
        if len(str(text)) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        message = self._bot_message(self._chat_for(params.get("chat_id")), params)
        message["text"] = str(text)
        if params.get("entities"):
            message["entities"] = params["entities"]
        return self._store(message)

    async def _send_media(
        self, kind: str, params: JSONDict, files: dict[str, FilePart]
    ) -> JSONDict:
        chat = self._chat_for(params.get("chat_id"))
        caption = self._caption_fields(params)
        message = self._bot_message(chat, params)
        stored = self._resolve_input_file(kind, params.get(kind), files, direct_part=kind)
        message.update(self._media_fields(kind, stored, params))
        message.update(caption)
        return self._store(message)

    async def _send_media_group(
        self, params: JSONDict, files: dict[str, FilePart]
    ) -> list[JSONDict]:
        chat = self._chat_for(params.get("chat_id"))
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad_request("media must include 2-10 items")
        kinds = {item.get("type") for item in media if isinstance(item, dict)}
        for alone in ("document", "audio"):
            if alone in kinds and kinds != {alone}:
                # "Documents and audio files can be only grouped in an album with messages
                # of the same type."
                raise _bad_request("MEDIA_GROUP_INVALID")
        # sendMediaGroup has no reply_markup: an album carries no keyboard.
        params = {k: v for k, v in params.items() if k != "reply_markup"}
        group_id = str(10_000 + next(self._media_group_counter))
        prepared: list[JSONDict] = []
        for item in media:
            kind = item.get("type")
            if kind not in ("photo", "video", "document", "audio"):
                raise _bad_request(f"unsupported media type {kind!r} in a media group")
            caption = self._caption_fields(item)
            message = self._bot_message(chat, params)
            stored = self._resolve_input_file(kind, item.get("media"), files, direct_part=None)
            message.update(self._media_fields(kind, stored, item))
            message.update(caption)
            message["media_group_id"] = group_id
            prepared.append(message)
        return [self._store(message) for message in prepared]

    def _edit(self, message: JSONDict, params: JSONDict, changes: JSONDict) -> Any:
        """Apply ``changes`` and the (possibly removed) inline keyboard to a stored message."""
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad_request("message can't be edited")  # a bot edits only its own
        markup = _inline_markup(params)
        unchanged = all(message.get(k) == v for k, v in changes.items())
        if unchanged and message.get("reply_markup") == markup:
            raise _bad_request(_NOT_MODIFIED)
        message.update(changes)
        for key in [k for k, v in message.items() if v is None]:
            del message[key]
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _edit_message_text(self, params: JSONDict, files: dict[str, FilePart]) -> Any:
        if params.get("inline_message_id"):
            return True
        message = self._stored_message(params, "edit")
        text = params.get("text")
        if text is None or str(text).strip() == "":
            raise _bad_request("message text is empty")
        if len(str(text)) > MAX_TEXT_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        changes = {"text": str(text), "entities": params.get("entities") or None}
        return self._edit(message, params, changes)

    async def _edit_message_caption(self, params: JSONDict, files: dict[str, FilePart]) -> Any:
        if params.get("inline_message_id"):
            return True
        message = self._stored_message(params, "edit")
        if "text" in message:
            raise _bad_request("there is no caption in the message to edit")
        caption = self._caption_fields(params)
        changes = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
        }
        return self._edit(message, params, changes)

    async def _edit_message_reply_markup(self, params: JSONDict, files: dict[str, FilePart]) -> Any:
        if params.get("inline_message_id"):
            return True
        return self._edit(self._stored_message(params, "edit"), params, {})

    async def _delete_message(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        message = self._stored_message(params, "delete")
        del self.messages[(message["chat"]["id"], message["message_id"])]
        return True

    async def _send_chat_action(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        self._chat_for(params.get("chat_id"))
        if not params.get("action"):
            raise _bad_request("wrong parameter action in request")
        return True

    async def _set_message_reaction(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        message = self._stored_message(params, "react")
        reaction = params.get("reaction", [])
        if not isinstance(reaction, list):
            raise _bad_request("can't parse reaction types JSON object")
        for item in reaction:
            if not (
                isinstance(item, dict)
                and item.get("type") == "emoji"
                and isinstance(item.get("emoji"), str)
                and item["emoji"]
            ):
                raise _bad_request("REACTION_INVALID")
        if len(reaction) > MAX_BOT_REACTIONS:
            raise _bad_request("REACTIONS_TOO_MANY")
        self.reactions[(message["chat"]["id"], message["message_id"])] = reaction
        return True

    async def _get_file(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise _bad_request("invalid file_id")
        if self.max_download_size is not None and stored.file_size > self.max_download_size:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _answer_callback_query(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        query_id = str(params.get("callback_query_id"))
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        if self._callback_queries.pop(query_id, None) is None:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        return True

    def _member(self, chat_id: int, user_id: int) -> JSONDict:
        user = self._user_for(user_id)
        if self.chat_creators.get(chat_id) == user_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in self.chat_admins.get(chat_id, set()):
            return {"status": "administrator", "user": user, **_ADMIN_RIGHTS}
        return {"status": "member", "user": user}

    async def _get_chat_member(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        chat = self._chat_for(params.get("chat_id"))
        return self._member(chat["id"], _int_param(params, "user_id"))

    async def _get_chat_administrators(
        self, params: JSONDict, files: dict[str, FilePart]
    ) -> list[JSONDict]:
        chat_id = self._chat_for(params.get("chat_id"))["id"]
        user_ids: list[int] = []
        if (creator := self.chat_creators.get(chat_id)) is not None:
            user_ids.append(creator)
        user_ids.extend(sorted(self.chat_admins.get(chat_id, set()) - set(user_ids)))
        return [self._member(chat_id, user_id) for user_id in user_ids]

    def _may_pin(self, chat: JSONDict) -> bool:
        """In a private chat, always; elsewhere the bot must be an administrator (with
        can_pin_messages, which the fake's administrators all have) or the creator."""
        if chat.get("type") == "private":
            return True
        chat_id = chat["id"]
        return (
            self.bot_id in self.chat_admins.get(chat_id, set())
            or self.chat_creators.get(chat_id) == self.bot_id
        )

    async def _pin_chat_message(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        chat = self._chat_for(params.get("chat_id"))
        message_id = _int_param(params, "message_id")
        if not self._may_pin(chat):
            raise _bad_request("not enough rights to manage pinned messages in the chat")
        target = self.messages.get((chat["id"], message_id))
        if target is None:
            raise _bad_request("message to pin not found")
        pins = self.pinned.setdefault(chat["id"], [])
        if message_id in pins:
            pins.remove(message_id)
        pins.append(message_id)
        # "<bot> pinned «…»": a service message in the chat.
        service = self._bot_message(chat, {})
        service["pinned_message"] = _reply_stub(target)
        self._store(service)
        return True

    async def _unpin_chat_message(self, params: JSONDict, files: dict[str, FilePart]) -> bool:
        chat = self._chat_for(params.get("chat_id"))
        if not self._may_pin(chat):
            raise _bad_request("not enough rights to manage pinned messages in the chat")
        pins = self.pinned.get(chat["id"], [])
        if params.get("message_id") is None:  # the newest pin
            if pins:
                pins.pop()
            return True
        message_id = _int_param(params, "message_id")
        if (chat["id"], message_id) not in self.messages:
            raise _bad_request("message to unpin not found")
        if message_id in pins:
            pins.remove(message_id)
        return True

    async def _get_chat(self, params: JSONDict, files: dict[str, FilePart]) -> JSONDict:
        chat = self._chat_for(params.get("chat_id"))
        pins = self.pinned.get(chat["id"])
        if pins and (newest := self.messages.get((chat["id"], pins[-1]))) is not None:
            chat["pinned_message"] = _reply_stub(newest)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
