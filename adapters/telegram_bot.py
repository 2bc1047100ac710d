"""The Telegram adapter (python-telegram-bot 22); the code lives in adapters/telegram/."""

from __future__ import annotations

import os

os.environ.setdefault("PTB_TIMEDELTA", "true")  # before telegram is imported

from adapters.telegram import TelegramAdapter, TelegramSink

__all__ = ["TelegramAdapter", "TelegramSink"]
