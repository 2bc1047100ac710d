"""Telegram, through python-telegram-bot 22.

adapter.py  the Application: lifecycle, handlers, requests from messages and buttons
sink.py     DeliverySink: status messages, results, failures, Telegram errors -> ours
community.py  shared chats: /settings, /history, /usage, /cancel, Confirm / Cancel buttons
albums.py   media groups gathered into one request
flood.py    FloodControl: Telegram's rate limits, new messages before edits, reactions free
transport.py  AiohttpRequest: PTB's HTTP transport on aiohttp (a quarter of httpx's CPU)
parse.py    messages -> frozen values (command, origin, image sources)
texts.py    every Telegram-specific sentence and button
"""

from __future__ import annotations

import os

# PTB 22 warns on every int time period unless timedelta behaviour is chosen; set it before
# telegram is imported anywhere below.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.sink import TelegramSink, delivery_error

__all__ = ["TelegramAdapter", "TelegramSink", "delivery_error"]
