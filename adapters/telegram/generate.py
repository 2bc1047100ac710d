"""/imagine and /video on Telegram, and the buttons under a result that start a job (Reroll,
Animate, 4K): parsed, checked, the photos fetched, submitted (never waiting for the job),
and the job's first status line shown. The twin of discord/generate.py.

A generation command is acknowledged first: a reaction (TELEGRAM_ACK_REACTION) on its
message goes out before it is parsed, checked or submitted, outside the rate limits
(FloodControl), so the asker sees at once that the bot has it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from telegram import Bot, CallbackQuery, Message
from telegram.constants import ReactionEmoji
from telegram.error import BadRequest, TelegramError

from adapters.commands import parse_command_text
from adapters.telegram.parse import (
    DOWNLOAD_LIMIT,
    ImageSource,
    TelegramCommand,
    check_source,
    image_sources,
    request_key,
)
from adapters.telegram.sessions import remix_parent
from adapters.telegram.sink import TelegramSink
from adapters.telegram.texts import (
    ACTION_ANSWERS,
    CALLBACK_ANSWER_MAX,
    CONFIRM_FIRST,
    DOWNLOAD_FAILED,
    OOPS,
    SOMETHING_WRONG,
    clip,
    over_download_limit,
)
from bot.app import Core
from bot.errors import ConfigError, RequestRejected
from bot.faults import crash_point
from bot.models import GenerationRequest, Job, JobAction, Kind, Origin, ReferenceImage
from bot.outcomes import NothingRecorded, RecordUnknown

__all__ = ["KINDS", "GenerateHandlers", "ack_reaction"]

log = logging.getLogger(__name__)

ButtonAction = Callable[..., Awaitable[Job]]

KINDS = {"imagine": Kind.IMAGE, "video": Kind.VIDEO}
REACTIONS = tuple(emoji.value for emoji in ReactionEmoji)  # what Telegram takes from a bot
VARIATION_SELECTOR = "\ufe0f"  # "❤️" as typed; Telegram's list has "❤"


def ack_reaction(value: str) -> str | None:
    """TELEGRAM_ACK_REACTION as Telegram takes it; None when empty (no reaction)."""
    value = value.strip()
    if not value:
        return None
    for candidate in (value, value.replace(VARIATION_SELECTOR, "")):
        if candidate in REACTIONS:
            return candidate
    raise ConfigError(
        f"TELEGRAM_ACK_REACTION is {value!r}, which Telegram does not take as a bot's "
        f"reaction; set one of {' '.join(REACTIONS)}, or leave it empty for none"
    )


class GenerateHandlers:
    """The requests that start a job. `reaction`: what acknowledges a command (None: no
    reaction)."""

    def __init__(self, core: Core, bot: Bot, sink: TelegramSink, *, reaction: str | None) -> None:
        self.core = core
        self.bot = bot
        self.sink = sink
        self.reaction = reaction
        self._acks: set[asyncio.Task[None]] = set()

    async def acknowledge(self, message: Message) -> None:
        """Set the reaction on the command's message, in a task of its own: it goes out
        now, while the command is parsed and submitted, and its failure stops nothing."""
        if self.reaction is None:
            return
        task = asyncio.create_task(
            _react(self.bot, message.chat.id, message.message_id, self.reaction),
            name=f"telegram-ack-{message.chat.id}-{message.message_id}",
        )
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        await asyncio.sleep(0)  # let its request start before the command's work

    async def aclose(self) -> None:
        """Call off the reactions still on their way."""
        for task in list(self._acks):
            task.cancel()
        await asyncio.gather(*self._acks, return_exceptions=True)

    # -- /imagine and /video ---------------------------------------------------------------

    async def command(
        self,
        message: Message,
        command: TelegramCommand,
        origin: Origin,
        holders: Sequence[Message],
    ) -> None:
        """/imagine or /video: a job, or a refusal as a reply."""
        try:
            job = await self._submit(message, command, KINDS[command.name], origin, holders)
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s message %s: /%s refused (%s)",
                origin.chat_id,
                origin.message_id,
                command.name,
                exc.code,
            )
            await self.sink.reply(origin, exc.message)
            return
        log.info(
            "telegram: chat %s message %s: /%s -> job %s (%d images)%s",
            origin.chat_id,
            origin.message_id,
            command.name,
            job.id,
            len(job.images),
            " waiting for Confirm" if job.hold else "",
        )

    async def apology(self, origin: Origin) -> str | None:
        """What to say after an unexpected failure: "nothing was made" only when the core
        holds no job for the request; nothing when it does (its result still comes)."""
        outcome = await self.core.service.after_failure(request_key(origin))
        if isinstance(outcome, RecordUnknown):
            return OOPS
        if isinstance(outcome, NothingRecorded):
            return SOMETHING_WRONG
        return None

    async def _submit(
        self,
        message: Message,
        command: TelegramCommand,
        kind: Kind,
        origin: Origin,
        holders: Sequence[Message],
    ) -> Job:
        """Parse, check, fetch the photos, submit, reply with the status line. Nothing is
        downloaded before the request passed every check that needs no download."""
        parsed = parse_command_text(command.args, self.core.catalog)
        sources = [source for holder in holders for source in image_sources(holder)]
        parent = remix_parent(message, kind, bool(sources))  # a reply to a session entry
        if parent is None and not sources and message.reply_to_message is not None:
            sources = image_sources(message.reply_to_message)
        for source in sources:
            check_source(source)
        service = self.core.service
        key = request_key(origin)
        recorded = await service.find_request(key)
        if recorded is not None:  # a replayed update: the job exists, fetch nothing again
            job = await service.submit(GenerationRequest(kind, "", origin, request_key=key))
            if not job.terminal and job.status_message_id is None:
                await self._show_started(job)  # unless one was (maybe) sent: the claim
            return job
        draft = GenerationRequest(
            kind=kind,
            prompt=parsed.prompt,
            origin=origin,
            request_key=key,
            model=parsed.model,
            images=tuple(_placeholder(s) for s in sources),
            aspect_ratio=parsed.aspect_ratio,
            quality=parsed.quality,
        )
        if parent is not None:  # that entry's image is the reference, the chain kept
            remix = await service.remix_request(
                parent, parsed.prompt, origin, model=parsed.model, request_key=key
            )
            draft = dataclasses.replace(
                remix, aspect_ratio=draft.aspect_ratio, quality=draft.quality
            )
        try:
            service.check(draft)
        except RequestRejected:
            with suppress(RequestRejected):
                await service.submit(draft)  # refused again, and recorded as `rejected`
            raise
        images = await asyncio.gather(*(self._fetch(s) for s in sources))
        request = dataclasses.replace(draft, images=tuple(images)) if sources else draft
        # The chat's rules (limits, confirmation, its place in line) are known only once the
        # core took the job, so the status line follows it; a refusal is a plain reply.
        job = await service.submit(request)
        await self._show_started(job)
        return job

    async def _show_started(self, job: Job) -> None:
        """Reply with a new job's status line (a Confirm prompt for a held video); the sink
        claims it in the store first and stores its id at once. A progress update that comes
        meanwhile waits for the lock, then edits this line. The job is recorded: a failure
        here is logged and the job goes on (its result still comes)."""
        try:
            async with self.sink.lock(job.id):
                await self.sink.show_status(job)
        except Exception as exc:
            log.warning(
                "job %s: status line not shown (%s: %s); the job goes on",
                job.id,
                type(exc).__name__,
                exc,
            )

    async def _fetch(self, source: ImageSource) -> ReferenceImage:
        """Download a Telegram file through PTB and host it ourselves: the file URL carries
        the bot token, so it never leaves this process."""
        crash_point("photo_downloading")
        try:
            tg_file = await self.bot.get_file(source.file_id)
            data = await tg_file.download_as_bytearray()
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                # Our size was wrong or missing if Telegram says so: do not repeat it.
                raise RequestRejected(
                    over_download_limit(None, is_photo=source.is_photo, limit=DOWNLOAD_LIMIT),
                    code="telegram_download_limit",
                ) from None
            raise RequestRejected(DOWNLOAD_FAILED, code="telegram_download") from None
        except TelegramError:
            raise RequestRejected(DOWNLOAD_FAILED, code="telegram_download") from None
        return await self.core.media.host(bytes(data), filename=source.filename)

    # -- Reroll, Animate, 4K ---------------------------------------------------------------

    async def button(
        self, query: CallbackQuery, action: JobAction, job_id: str, origin: Origin
    ) -> None:
        """A new job from the one under the button, owned by whoever pressed."""
        service = self.core.service
        actions: dict[JobAction, ButtonAction] = {
            JobAction.REROLL: service.reroll,
            JobAction.ANIMATE: service.animate,
            JobAction.UPSCALE: service.upscale,
        }
        try:
            job = await actions[action](
                job_id, origin, request_key=f"telegram:{origin.chat_id}:cb:{query.id}"
            )
        except RequestRejected as exc:
            log.info(
                "telegram: chat %s: %s on job %s refused (%s)",
                origin.chat_id,
                action,
                job_id,
                exc.code,
            )
            await query.answer(clip(exc.message, CALLBACK_ANSWER_MAX), show_alert=True)
            return
        log.info(
            "telegram: chat %s: %s on job %s by user %s -> job %s",
            origin.chat_id,
            action,
            job_id,
            origin.user_id,
            job.id,
        )
        spec = self.core.catalog.resolve(job.model)
        answer = ACTION_ANSWERS[action].format(name=spec.name if spec else job.model)
        if job.hold == "confirm":
            answer += CONFIRM_FIRST
        # Held until the status line exists, so a progress update cannot post a second one.
        async with self.sink.lock(job.id):
            with suppress(TelegramError):  # a query can expire; the job goes on regardless
                await query.answer(clip(answer, CALLBACK_ANSWER_MAX))
        await self._show_started(job)


async def _react(bot: Bot, chat_id: int, message_id: int, reaction: str) -> None:
    try:
        await bot.set_message_reaction(chat_id, message_id, reaction=reaction)
    except TelegramError as exc:  # reactions off in the group, flood control, network
        log.info(
            "telegram: chat %s message %s: no reaction (%s: %s)",
            chat_id,
            message_id,
            type(exc).__name__,
            exc,
        )


def _placeholder(source: ImageSource) -> ReferenceImage:
    """A photo to fetch, named by its Telegram id until it is downloaded (after the checks)."""
    return ReferenceImage(
        ref=f"telegram:{source.unique_id}",
        mime=source.mime or "image/jpeg",
        size=source.size,
        filename=source.filename,
    )
