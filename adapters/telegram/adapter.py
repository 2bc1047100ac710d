"""The Telegram adapter: a python-telegram-bot Application polling on the core's event loop,
and its updates handed to the handlers: a message (or an album, once all its photos are
in) to /imagine and /video (generate.py, which acknowledge it first with a reaction), to
the community commands (community.py), to /session (sessions.py) or to a plain reply
(/help, /start, /models); a button press to the handlers of its action. The delivery sink
and the session sink are registered with the core while it runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from types import TracebackType
from typing import Any

from telegram import Message, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ExtBot,
    MessageHandler,
    filters,
)

from adapters.telegram.albums import AlbumCollector
from adapters.telegram.board import BOARD_INTERVAL_S
from adapters.telegram.community import BUTTONS as COMMUNITY_BUTTONS
from adapters.telegram.community import COMMANDS as COMMUNITY_COMMANDS
from adapters.telegram.community import CommunityHandlers
from adapters.telegram.flood import FloodControl
from adapters.telegram.generate import KINDS, GenerateHandlers, ack_reaction
from adapters.telegram.inbox import InboxApplication, InboxBot, TelegramInbox, inbox_source
from adapters.telegram.intake import Intake, PollingIntake, WebhookIntake
from adapters.telegram.parse import PLATFORM, TelegramCommand, origin_of, parse_command
from adapters.telegram.sessions import BUTTONS as SESSION_BUTTONS
from adapters.telegram.sessions import COMMANDS as SESSION_COMMANDS
from adapters.telegram.sessions import SessionHandlers
from adapters.telegram.sink import TelegramSink
from adapters.telegram.texts import (
    BOT_COMMANDS,
    BUTTON_RE,
    OOPS,
    help_text,
    models_text,
    start_text,
)
from adapters.telegram.transport import AiohttpRequest
from adapters.telegram.webhook import TelegramWebhook
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError, PlatformUnavailable
from bot.faults import crash_point
from bot.models import JobAction, Origin

__all__ = ["TelegramAdapter"]

log = logging.getLogger(__name__)

App = Application[ExtBot[Any], Any, Any, Any, Any, Any]

MEDIA_WRITE_TIMEOUT_S = 120.0  # a 50 MB upload on a slow uplink
FLOOD_RETRIES = 3  # RetryAfter waits inside FloodControl before we give up


class TelegramAdapter:
    """`async with TelegramAdapter(core, settings):` takes Telegram's updates and delivers
    jobs whose origin is Telegram until the block ends. Updates come by long polling, or,
    with TELEGRAM_WEBHOOK_URL, through `webhook` (the route on our HTTP server): then the
    adapter sets the webhook and handles what the route keeps (intake.py).

    `application`: a PTB Application built outside (a test harness, another transport) to
    use instead of building one. The adapter adds its handlers and runs it (initialize,
    start, poll, and shut it down at the end) as it runs its own; its bot's requests and
    rate limiter are the caller's, and its updates are not kept in the store's inbox (that
    needs the bot and application the adapter builds)."""

    platform = PLATFORM

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        album_debounce_s: float = 1.0,
        rate_limiter: BaseRateLimiter[int] | None = None,
        poll_timeout_s: float = 10.0,
        board_interval_s: float = BOARD_INTERVAL_S,
        application: App | None = None,
        webhook: TelegramWebhook | None = None,
    ) -> None:
        if settings.telegram_webhook_url is not None and webhook is None:
            raise ConfigError(
                "TELEGRAM_WEBHOOK_URL is set but the HTTP server is off (HTTP_PORT): "
                "Telegram's updates would have nowhere to arrive"
            )
        self.core = core
        self.settings = settings
        self.poll_timeout_s = poll_timeout_s
        self.board_interval_s = board_interval_s
        self._rate_limiter = rate_limiter
        self._reaction = ack_reaction(settings.telegram_ack_reaction)  # ConfigError at once
        self._albums = AlbumCollector(album_debounce_s, self._on_album)
        self._given_app = application
        self._webhook = webhook
        self.intake: Intake | None = None  # polling or webhook, once started
        self._app: App | None = None
        self._sink: TelegramSink | None = None
        self._community: CommunityHandlers | None = None
        self._generate: GenerateHandlers | None = None
        self._sessions: SessionHandlers | None = None
        self._inbox: TelegramInbox | None = None
        # Album photos waiting in the collector: (chat, message) -> their update ids.
        self._album_updates: dict[tuple[int, int], int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        app, intake = self._app, self.intake
        return bool(app and app.running and intake and intake.running)

    @property
    def app(self) -> App:
        if self._app is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._app

    @property
    def sink(self) -> TelegramSink:
        if self._sink is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._sink

    @property
    def community(self) -> CommunityHandlers:
        if self._community is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._community

    @property
    def generate(self) -> GenerateHandlers:
        if self._generate is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._generate

    @property
    def sessions(self) -> SessionHandlers:
        if self._sessions is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._sessions

    async def __aenter__(self) -> TelegramAdapter:
        if self._given_app is not None:
            app, requests = self._given_app, None
        else:
            token = self.settings.telegram_bot_token
            if token is None or not token.get_secret_value():
                raise ConfigError("TELEGRAM_BOT_TOKEN is not set")
            app, requests = self._build(token.get_secret_value())
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_button, pattern=BUTTON_RE))
        app.add_error_handler(self._on_error)
        try:
            await app.initialize()  # getMe: checks the token, learns our @username
        except BaseException as exc:
            # app.shutdown() skips an app whose initialize did not finish: close its sessions.
            if requests is None:
                await app.bot.shutdown()
            else:
                await asyncio.gather(*(r.shutdown() for r in requests))
            if isinstance(exc, InvalidToken):
                raise ConfigError("Telegram refused TELEGRAM_BOT_TOKEN (unauthorized)") from None
            if isinstance(exc, TelegramError):  # NetworkError, TimedOut, a 5xx, RetryAfter
                raise PlatformUnavailable(f"Telegram did not answer getMe ({exc})") from None
            raise
        self._app = app
        try:
            self.intake = intake = self._make_intake()
            sink, sessions = self._handlers(app)
            await app.start()
            await intake.start(app)
            await self._set_commands()
        except BaseException:
            await self._stop()
            raise
        self.core.notifier.register(sink)
        sink.lines.resume_drops()
        self.core.add_session_sink(sessions.cards)
        log.info("telegram: connected as @%s (%s)", app.bot.username, intake.mode)
        return self

    def _make_intake(self) -> Intake:
        url = self.settings.telegram_webhook_url
        secret = self.settings.telegram_webhook_secret_token()
        if url is None or secret is None or self._webhook is None:
            return PollingIntake(self._inbox, timeout_s=self.poll_timeout_s)
        if self._inbox is None:  # a given Application: nothing would keep its updates
            raise ConfigError("webhook mode needs the Application the adapter builds")
        return WebhookIntake(self._webhook, self._inbox, url=url, secret=secret)

    def _handlers(self, app: App) -> tuple[TelegramSink, SessionHandlers]:
        """The sink and the handlers of commands, buttons and sessions, on `app`'s bot."""
        self._sink = sink = TelegramSink(
            app.bot,
            self.core.catalog,
            upload_limit_mb=self.settings.telegram_upload_limit_mb,
            confirm_timeout_s=self.settings.confirm_timeout_s,
            statuses=self.core.service,
            fresh=self.core.service.get,
            entries=self.core.sessions.entry_for_job,
            board_after=self.settings.telegram_status_board_after,
            board_interval_s=self.board_interval_s,
        )
        self._community = CommunityHandlers(self.core, app.bot, sink)
        self._generate = GenerateHandlers(self.core, app.bot, sink, reaction=self._reaction)
        limit = self.settings.telegram_upload_limit_mb
        is_admin = self._community.is_admin
        self._sessions = sessions = SessionHandlers(
            self.core, app.bot, sink, is_admin, upload_limit_mb=limit
        )
        return sink, sessions

    def _build(self, secret: str) -> tuple[App, tuple[AiohttpRequest, AiohttpRequest]]:
        """The Application: PTB on our aiohttp transport, FloodControl, the inbox."""
        requests = (
            AiohttpRequest(media_write_timeout=MEDIA_WRITE_TIMEOUT_S),
            AiohttpRequest(connection_pool_size=1),  # getUpdates
        )
        inbox = TelegramInbox(self.core.store, self.core.clock, inbox_source(secret))
        bot = InboxBot(
            secret,
            base_url=self.settings.telegram_api_base_url,
            base_file_url=self.settings.telegram_file_base_url,
            request=requests[0],
            get_updates_request=requests[1],
            rate_limiter=self._rate_limiter or FloodControl(max_retries=FLOOD_RETRIES),
            inbox=inbox,
        )
        built = (
            ApplicationBuilder()
            .bot(bot)
            .application_class(InboxApplication)
            .concurrent_updates(True)
            .build()
        )
        assert isinstance(built, InboxApplication)
        built.use_inbox(inbox)
        self._inbox = inbox
        return built, requests

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sink is not None:
            self.core.notifier.unregister(PLATFORM, self._sink)
        if self._sessions is not None:
            self.core.remove_session_sink(PLATFORM, self._sessions.cards)
        await self._stop()
        log.info("telegram: disconnected")

    async def _stop(self) -> None:
        app, self._app = self._app, None
        if app is None:
            return
        if self.intake is not None:
            await self.intake.stop()
        await self._albums.aclose()
        if self._sink is not None:
            await self._sink.aclose()
        if self._generate is not None:
            await self._generate.aclose()
        if self._sessions is not None:
            await self._sessions.aclose()
        if app.running:
            await app.stop()  # waits for handlers still running
        await app.shutdown()

    async def _set_commands(self) -> None:
        try:
            await self.app.bot.set_my_commands(BOT_COMMANDS)
        except TelegramError as exc:
            log.warning("telegram: command list not set (%s)", exc)

    # -- messages --------------------------------------------------------------------------

    async def _on_message(self, update: Update, context: Any) -> None:
        message = update.message
        if message is None:
            return
        crash_point("update_received")
        command = parse_command(message.text or message.caption)
        if (
            command is not None
            and command.name in KINDS
            and command.addressed_to(self.app.bot.username)
        ):
            await self.generate.acknowledge(message)
        if message.media_group_id is not None:
            if self._inbox is not None:  # done when the album was handled, not now
                self._inbox.deferred.add(update.update_id)
                self._album_updates[(message.chat.id, message.message_id)] = update.update_id
            self._albums.add(message)  # handled once the whole album is in
            return
        if command is not None:
            await self._dispatch(message, command, [message])

    async def _on_album(self, messages: list[Message]) -> None:
        """The whole album; its updates are done once it was handled (not if cancelled)."""
        keys = [(m.chat.id, m.message_id) for m in messages]
        update_ids = [u for k in keys if (u := self._album_updates.get(k)) is not None]
        try:
            for message in messages:
                command = parse_command(message.caption)
                if command is not None:
                    await self._dispatch(message, command, messages)
                    break
            else:
                log.debug(
                    "telegram: album without a command in chat %s ignored", messages[0].chat.id
                )
        except Exception:
            log.exception("telegram: album in chat %s failed", messages[0].chat.id)
        for key in keys:
            self._album_updates.pop(key, None)
        if self._inbox is not None:
            await self._inbox.finish_deferred(update_ids)

    async def _dispatch(
        self, message: Message, command: TelegramCommand, holders: Sequence[Message]
    ) -> None:
        chat_id, message_id = message.chat.id, message.message_id
        if not command.addressed_to(self.app.bot.username):
            log.debug(
                "telegram: chat %s message %s: /%s is for @%s; ignored",
                chat_id,
                message_id,
                command.name,
                command.bot,
            )
            return
        origin = origin_of(message)
        try:
            if command.name in KINDS:
                await self.generate.command(message, command, origin, holders)
            elif command.name == "help":
                await self.sink.reply(origin, help_text(self.core.catalog))
            elif command.name == "start":
                await self.sink.reply(origin, start_text(self.core.catalog))
            elif command.name == "models":
                await self.sink.reply(origin, models_text(self.core.catalog))
            elif command.name in COMMUNITY_COMMANDS:
                await self.community.command(message.chat, command, origin)
            elif command.name in SESSION_COMMANDS:
                await self.sessions.command(message.chat, command, origin)
        except TelegramError as exc:
            log.warning(
                "telegram: chat %s message %s: /%s not answered (%s)",
                chat_id,
                message_id,
                command.name,
                exc,
            )
        except Exception:
            log.exception(
                "telegram: chat %s message %s: /%s failed", chat_id, message_id, command.name
            )
            words = await self.generate.apology(origin) if command.name in KINDS else OOPS
            if words is not None:
                with suppress(TelegramError):
                    await self.sink.reply(origin, words)

    # -- buttons ---------------------------------------------------------------------------

    async def _on_button(self, update: Update, context: Any) -> None:
        query = update.callback_query
        if query is None or query.data is None or query.message is None:
            return
        name, _, job_id = query.data.partition(":")
        action = JobAction(name)  # BUTTON_RE let only Telegram's actions through
        result = query.message
        if isinstance(result, Message):
            origin = origin_of(result, query.from_user)
        else:  # a message too old for Telegram to show us: still answer in its chat
            origin = Origin(
                platform=PLATFORM,
                chat_id=str(result.chat.id),
                user_id=str(query.from_user.id),
                user_name=query.from_user.full_name,
                message_id=str(result.message_id),
            )
        if action in COMMUNITY_BUTTONS:
            await self.community.button(query, action, job_id, origin)
        elif action in SESSION_BUTTONS:
            await self.sessions.button(query, action, job_id, origin)
        else:
            await self.generate.button(query, action, job_id, origin)

    async def _on_error(self, update: object, context: Any) -> None:
        error = getattr(context, "error", None)
        update_id = update.update_id if isinstance(update, Update) else None
        if isinstance(error, TelegramError):
            log.warning("telegram: update %s: %s: %s", update_id, type(error).__name__, error)
        else:
            log.error("telegram: update %s failed", update_id, exc_info=error)

    async def stop_intake(self) -> None:
        """Shutting down: take no more updates (the ones not confirmed, or in webhook mode
        kept but not taken, go to the next process); replies and uploads in flight go on
        until the adapter closes."""
        if self._app is not None and self.intake is not None and self.intake.running:
            await self.intake.stop()
            log.info("telegram: stopped taking updates")
