"""Shared chats on Telegram: /settings, /history, /usage and /cancel, and the Confirm, Cancel
and Send again buttons. The rules and their words are the core's; this only asks and shows."""

from __future__ import annotations

import logging

from telegram import Bot, CallbackQuery, Chat, InlineKeyboardMarkup
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

from adapters.telegram.parse import TelegramCommand
from adapters.telegram.sink import TelegramSink
from adapters.telegram.texts import (
    CALLBACK_ANSWER_MAX,
    CONFIRMED,
    ORIGINAL_SENDING,
    RESENDING,
    RESULT_UNAVAILABLE,
    clip,
    history_buttons,
    setting_hint,
)
from bot.app import Core
from bot.community import SETTING_NAMES
from bot.errors import MediaError, RequestRejected
from bot.messages import (
    cancel_text,
    chat_usage_text,
    history_text,
    rules_text,
    setting_changed_text,
    setting_shown,
    usage_text,
)
from bot.models import Job, JobAction, JobState, Origin
from bot.ports import ResultFile

__all__ = ["BUTTONS", "COMMANDS", "CommunityHandlers"]

log = logging.getLogger(__name__)

COMMANDS = frozenset({"settings", "history", "usage", "cancel"})
BUTTONS = frozenset({JobAction.CONFIRM, JobAction.CANCEL, JobAction.RESEND, JobAction.ORIGINAL})
_ADMIN = frozenset({ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER})


class CommunityHandlers:
    """The community commands and buttons of one TelegramAdapter."""

    def __init__(self, core: Core, bot: Bot, sink: TelegramSink) -> None:
        self.core = core
        self.bot = bot
        self.sink = sink
        self._originals: set[tuple[str, int]] = set()  # result messages whose original goes

    async def is_admin(self, chat: Chat, origin: Origin) -> bool:
        """Whether the sender runs this chat: its creator or an administrator (in a private
        chat, the user). Operator ids from the configuration are the core's to add."""
        if chat.type == ChatType.PRIVATE:
            return True
        if origin.context.get("anonymous"):
            return origin.user_id == str(chat.id)  # an anonymous admin posts as the group
        try:
            member = await self.bot.get_chat_member(chat.id, int(origin.user_id))
        except TelegramError as exc:
            log.warning(
                "telegram: chat %s: admin check for user %s failed (%s)",
                chat.id,
                origin.user_id,
                exc,
            )
            return False
        return member.status in _ADMIN

    # -- commands --------------------------------------------------------------------------

    async def command(self, chat: Chat, command: TelegramCommand, origin: Origin) -> None:
        """Answer /settings, /history, /usage or /cancel with a reply."""
        markup: InlineKeyboardMarkup | None = None
        try:
            if command.name == "settings":
                text = await self._settings(chat, command.args, origin)
            elif command.name == "history":
                text, markup = await self._history(origin)
            elif command.name == "usage":
                text = await self._usage(chat, command.args, origin)
            else:
                text = cancel_text(await self.core.service.cancel_latest(origin))
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s message %s: /%s refused (%s)",
                origin.chat_id,
                origin.message_id,
                command.name,
                exc.code,
            )
            text = exc.message
        await self.sink.reply(origin, text, markup=markup)

    async def _settings(self, chat: Chat, args: str, origin: Origin) -> str:
        service = self.core.service
        words = args.split(maxsplit=1)
        if not words:
            return rules_text(await service.rules(origin))
        name, value = words[0], (words[1] if len(words) > 1 else "")
        key = name.lower().replace("-", "_")
        if not value and key in SETTING_NAMES:
            rules = await service.rules(origin)
            return setting_hint(key, setting_shown(key, getattr(rules, key)))
        changed = await service.change_setting(
            origin, name, value, is_admin=await self.is_admin(chat, origin)
        )
        log.info(
            "telegram: chat %s: setting %s changed by user %s", origin.chat_id, key, origin.user_id
        )
        return setting_changed_text(changed)

    async def _history(self, origin: Origin) -> tuple[str, InlineKeyboardMarkup | None]:
        service = self.core.service
        jobs = await service.history(origin)
        numbered: list[tuple[int, Job]] = []
        for n, job in enumerate(jobs, start=1):
            if job.state is JobState.SUCCEEDED:
                try:
                    await service.stored_result(job.id, origin)
                except RequestRejected:
                    continue
                numbered.append((n, job))
        marks = await self.core.sessions.entry_numbers([job.id for job in jobs])
        text = history_text(jobs, self.core.catalog, self.core.clock.now(), marks)
        return text, history_buttons(numbered)

    async def _usage(self, chat: Chat, args: str, origin: Origin) -> str:
        service = self.core.service
        if args.strip().lower() == "chat":
            admin = await self.is_admin(chat, origin)
            return chat_usage_text(await service.chat_usage(origin, is_admin=admin))
        return usage_text(await service.usage(origin))

    # -- buttons ---------------------------------------------------------------------------

    async def button(
        self, query: CallbackQuery, action: JobAction, job_id: str, origin: Origin
    ) -> None:
        """Confirm, Cancel, Send again or Original, pressed by `origin.user_id`."""
        try:
            if action is JobAction.CONFIRM:
                await self._confirm(query, job_id, origin)
            elif action is JobAction.CANCEL:
                text = cancel_text(await self.core.service.cancel(job_id, origin))
                log.info(
                    "telegram: chat %s: cancel on job %s by user %s: %s",
                    origin.chat_id,
                    job_id,
                    origin.user_id,
                    text,
                )
                await _answer(query, text)
            elif action is JobAction.ORIGINAL:
                await self._send_original(query, job_id, origin)
            else:
                await self._send_again(query, job_id, origin)
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s: %s on job %s by user %s refused (%s)",
                origin.chat_id,
                action,
                job_id,
                origin.user_id,
                exc.code,
            )
            await _answer(query, exc.message, alert=True)

    async def _confirm(self, query: CallbackQuery, job_id: str, origin: Origin) -> None:
        service = self.core.service
        prompt = query.message
        # Held until the prompt has become the status line, so a progress update that the
        # confirmation sets off cannot be overwritten by it.
        async with self.sink.lock(job_id):
            job = await service.confirm(job_id, origin)
            log.info("telegram: chat %s: job %s confirmed", origin.chat_id, job.id)
            await _answer(query, CONFIRMED)
            status_id = await self.sink.show_status(
                job, adopt=prompt.message_id if prompt is not None else None
            )
        if status_id is not None:
            await service.attach_status_message(job.id, str(status_id))

    async def _result_files(self, query: CallbackQuery, job: Job) -> list[ResultFile]:
        """The job's result files fetched again; none (and the presser told so) when the
        gateway's links are gone."""
        try:
            files = await self.core.notifier.fetch_results(job)
        except MediaError as exc:
            log.info("job %s: result not fetched again (%s)", job.id, exc)
            files = []
        if not files:
            await _answer(query, RESULT_UNAVAILABLE, alert=True)
        return files

    async def _send_again(self, query: CallbackQuery, job_id: str, origin: Origin) -> None:
        job = await self.core.service.stored_result(job_id, origin)
        files = await self._result_files(query, job)
        if not files:
            return
        await _answer(query, RESENDING)
        await self.sink.send_again(job, files, origin)

    async def _send_original(self, query: CallbackQuery, job_id: str, origin: Origin) -> None:
        """📎 Original under a result photo: anyone in the chat may press it; each press sends
        the file once, as a reply to the photo (a press while it is on its way is answered
        and sends nothing more)."""
        result = query.message
        if result is None:
            return
        key = (origin.chat_id, result.message_id)
        if key in self._originals:
            await _answer(query, ORIGINAL_SENDING)
            return
        job = await self.core.service.stored_result(job_id, origin, anyone=True)
        files = await self._result_files(query, job)
        if not files:
            return
        await _answer(query, ORIGINAL_SENDING)
        self._originals.add(key)
        try:
            await self.sink.send_original(job, files, origin, result.message_id)
        except TelegramError as exc:
            log.info("job %s: original not sent (%s)", job.id, exc)
        finally:
            self._originals.discard(key)


async def _answer(query: CallbackQuery, text: str, *, alert: bool = False) -> None:
    """Answer a button press; a query can expire, and what it did stands regardless."""
    try:
        await query.answer(clip(text, CALLBACK_ANSWER_MAX), show_alert=alert)
    except TelegramError as exc:
        log.info("telegram: callback query %s not answered (%s)", query.id, exc)
