"""Lanes: how `FloodControl` (adapters/telegram/flood.py) sorts what the bot sends to
Telegram, and which chat's budget a request spends.

    FREE     no chat_id (getUpdates, getFile, getMe, setMyCommands, answerCallbackQuery,
             ...) or a read (get*: getChat, getChatMember, ...): straight through; a
             RetryAfter waits out and retries this request only.
    ACK      setMessageReaction, sendChatAction: straight through, never queued, never
             retried; a RetryAfter goes to the caller and pauses nothing else.
    RESULT   sendPhoto, sendVideo, sendDocument, sendAnimation, sendMediaGroup (the files
             a job made): takes a token from the overall bucket and, in a group, from the
             group's bucket, before anything else waiting: in a group past its budget
             a finished result goes before status messages of jobs that just came in.
    MESSAGE  every other request with a chat_id (sendMessage, copyMessage, ...): the same
             tokens, when no RESULT that could use them is waiting.
    STATUS   a new message sent inside `status_traffic()` (a status line or board):
             status traffic, as EDIT below, but served before edits.
    EDIT     status traffic: editMessage*, deleteMessage*: the same tokens, but only
             when no RESULT or MESSAGE that could use them is waiting, and only while a
             quarter of the budget (`edit_reserve`) stays left for new messages and, in a
             group, while the tokens its running jobs' results will need stay left
             (`expect_results(chat, n)`: n jobs in flight there keep n tokens in reserve),
             and overall as many tokens as results took in the last second:
             cosmetic traffic spends only what the results do not need.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

__all__ = ["COSMETIC", "ChatKey", "Lane", "chat_key", "lane_of", "status_traffic"]

ChatKey = int | str

ACK_ENDPOINTS = frozenset({"setMessageReaction", "sendChatAction"})
EDIT_PREFIXES = ("editMessage", "deleteMessage")
RESULT_ENDPOINTS = frozenset(
    {"sendPhoto", "sendVideo", "sendDocument", "sendAnimation", "sendMediaGroup"}
)
READ_PREFIX = "get"

# Set inside `status_traffic()`: the requests of this task are cosmetic (EDIT lane).
_STATUS: contextvars.ContextVar[bool] = contextvars.ContextVar("status_traffic", default=False)


@contextlib.contextmanager
def status_traffic() -> Iterator[None]:
    """Requests made inside are status traffic (a status line, a board, their edits and
    deletes): served after results and replies, from what their budget leaves."""
    token = _STATUS.set(True)
    try:
        yield
    finally:
        _STATUS.reset(token)


class Lane(IntEnum):
    """How a request is limited; RESULT, MESSAGE, STATUS and EDIT wait, served in this
    order."""

    RESULT = 0
    MESSAGE = 1
    STATUS = 2
    EDIT = 3
    ACK = 4
    FREE = 5


COSMETIC = frozenset({Lane.STATUS, Lane.EDIT})


def lane_of(endpoint: str, data: dict[str, Any]) -> Lane:
    if endpoint in ACK_ENDPOINTS:
        return Lane.ACK
    if data.get("chat_id") is None or endpoint.startswith(READ_PREFIX):
        return Lane.FREE
    if endpoint.startswith(EDIT_PREFIXES):
        return Lane.EDIT
    if _STATUS.get():
        return Lane.STATUS
    if endpoint in RESULT_ENDPOINTS:
        return Lane.RESULT
    return Lane.MESSAGE


def chat_key(chat_id: object) -> tuple[ChatKey, bool]:
    """The chat a request is about, and whether it is a group or channel (a negative id or
    an @username, as AIORateLimiter decides: channels and supergroups look alike)."""
    if isinstance(chat_id, str):
        try:
            chat_id = int(chat_id)
        except ValueError:
            return chat_id, True
    if not isinstance(chat_id, int):
        raise TypeError(f"chat_id {chat_id!r} is neither an int nor a str")
    return chat_id, chat_id < 0
