"""Telegram messages into frozen values: the command, where the answer goes (and the request
key that names it), and the images, refused at once where Telegram's own limits call for it.
The twin of discord/parse.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, User
from telegram.constants import FileSizeLimit

from adapters.telegram.texts import not_an_image, over_download_limit
from bot.errors import RequestRejected
from bot.models import Origin

__all__ = [
    "DOWNLOAD_LIMIT",
    "ImageSource",
    "TelegramCommand",
    "check_source",
    "image_sources",
    "origin_of",
    "parse_command",
    "request_key",
]

PLATFORM = "telegram"
DOWNLOAD_LIMIT = FileSizeLimit.FILESIZE_DOWNLOAD  # the Bot API serves bots files up to 20 MB

# "/imagine@genrelay_bot a fox --ar 9:16": the command word, the bot it is addressed to, the rest.
_COMMAND_RE = re.compile(
    r"\A/(?P<name>[A-Za-z0-9_]{1,32})(?:@(?P<bot>[A-Za-z0-9_]{1,32}))?(?=\s|\Z)(?P<args>.*)\Z",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class TelegramCommand:
    name: str  # lower case, without the slash
    bot: str | None  # the bot named after "@", if any
    args: str  # everything after the command word

    def addressed_to(self, username: str | None) -> bool:
        """A bare command is for every bot; "/cmd@other_bot" is not for us."""
        return self.bot is None or (username is not None and self.bot.lower() == username.lower())


def parse_command(text: str | None) -> TelegramCommand | None:
    if not text:
        return None
    match = _COMMAND_RE.match(text.strip())
    if match is None:
        return None
    return TelegramCommand(name=match["name"].lower(), bot=match["bot"], args=match["args"].strip())


@dataclass(frozen=True, slots=True)
class ImageSource:
    """A Telegram file that should become a reference image (not downloaded yet)."""

    file_id: str
    unique_id: str
    size: int | None
    mime: str | None  # what Telegram says; None for photos (always JPEG)
    filename: str
    is_photo: bool

    @property
    def is_image(self) -> bool:
        return self.is_photo or (self.mime or "").startswith("image/")


def image_sources(message: Message) -> list[ImageSource]:
    """The photo (largest size) or document a message holds; [] when it holds neither."""
    if message.photo:
        largest = message.photo[-1]
        return [
            ImageSource(
                file_id=largest.file_id,
                unique_id=largest.file_unique_id,
                size=largest.file_size,
                mime=None,
                filename=f"photo_{largest.file_unique_id}.jpg",
                is_photo=True,
            )
        ]
    doc = message.document
    if doc is not None:
        return [
            ImageSource(
                file_id=doc.file_id,
                unique_id=doc.file_unique_id,
                size=doc.file_size,
                mime=doc.mime_type,
                filename=doc.file_name or f"file_{doc.file_unique_id}",
                is_photo=False,
            )
        ]
    return []


def check_source(source: ImageSource) -> None:
    """Refusals Telegram's own limits call for, before anything is downloaded."""
    if not source.is_image:
        raise RequestRejected(not_an_image(source.filename), code="not_an_image")
    if source.size is not None and source.size > DOWNLOAD_LIMIT:
        raise RequestRejected(
            over_download_limit(source.size, is_photo=source.is_photo, limit=DOWNLOAD_LIMIT),
            code="telegram_download_limit",
        )


def _thread_id(message: Message) -> str | None:
    """The forum topic to answer in. Only forum topics take message_thread_id; in a plain
    supergroup a reply carries the id of its reply thread, which must not be sent back."""
    if message.message_thread_id is None:
        return None
    in_topic = message.is_topic_message or message.chat.is_forum
    if in_topic or message.reply_to_message is None:
        return str(message.message_thread_id)
    return None


def origin_of(message: Message, user: User | None = None) -> Origin:
    """Where the answer to `message` goes: a reply to it, in its chat and forum topic.
    `user` overrides the sender (whoever pressed a button under a result)."""
    context: dict[str, object] = {}
    if user is None and message.sender_chat is not None:
        # An anonymous admin or a channel: there is nobody to mention.
        context["anonymous"] = True
        user_id = str(message.sender_chat.id)
        name = message.sender_chat.title or message.sender_chat.username
    else:
        sender = user or message.from_user
        user_id = str(sender.id) if sender else str(message.chat.id)
        name = sender.full_name if sender else None
    return Origin(
        platform=PLATFORM,
        chat_id=str(message.chat.id),
        user_id=user_id,
        user_name=name,
        thread_id=_thread_id(message),
        message_id=str(message.message_id),
        context=context,
    )


def request_key(origin: Origin) -> str:
    """The core's idempotency key of a command: its chat and message."""
    return f"{PLATFORM}:{origin.chat_id}:{origin.message_id}"
