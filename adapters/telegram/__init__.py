"""Telegram, through python-telegram-bot 22. The files mirror adapters/discord/, one job each:

adapter.py    TelegramAdapter: the Application's lifecycle; updates (messages, albums, button
              presses) handed to the handlers below
generate.py   /imagine and /video, and the buttons that start a job (Reroll, Animate, 4K);
              a command is acknowledged first with a reaction
parse.py      messages -> frozen values (command, origin, image sources, request key)
sink.py       TelegramSink, the DeliverySink: status messages, results, failures, Telegram
              errors -> ours; it composes status.py (a job's own status line), board.py
              (a busy group's status board) and results.py (replies; a result posted as a
              photo or video, else a document, else a link)
community.py  shared chats: /settings, /history, /usage, /cancel, Confirm / Cancel / Send
              again / Original buttons
texts.py      every Telegram-specific sentence, and the inline keyboards (their Discord twin
              is discord/ui.py; Discord's slash commands, discord/slash.py, have none: here
              commands are text, parsed by adapters/commands.py)
flood.py      FloodControl: Telegram's rate limits, new messages before edits, reactions free;
              what goes first in lanes.py, the budgets' sliding windows in window.py
sessions.py   creative sessions: /session, the vote and Remix buttons, remixes by reply, the
              vote counts kept current (coalesced edits)
session_sink.py  SessionSink: the session card (pinned where allowed) and the recap album

Telegram-only, and why:
albums.py     an album comes as one message per photo: gathered into one request
inbox.py      Telegram sends an update again until told it arrived: kept, replayed, once
intake.py     how updates come: long polling, or the webhook (setWebhook, then the inbox)
webhook.py    webhook mode's route on our HTTP server: secret checked, update kept, 200
transport.py  AiohttpRequest: PTB's HTTP transport on aiohttp (a quarter of httpx's CPU);
              discord.py is on aiohttp already

Discord's files with no twin here, and why:
answers.py    a Telegram message needs no answer, and a button press's is one call
              (`query.answer`); Discord wants one per interaction within 3 s, then its token
"""

from __future__ import annotations

import os

# PTB 22 warns on every int time period unless timedelta behaviour is chosen; set it before
# telegram is imported anywhere below.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.sink import TelegramSink, delivery_error

__all__ = ["TelegramAdapter", "TelegramSink", "delivery_error"]
