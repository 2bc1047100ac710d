"""Discord, through discord.py 2. The files mirror adapters/telegram/, one job each:

adapter.py    DiscordAdapter: the client's lifecycle; commands and button presses handed to
              the handlers below
generate.py   /imagine and /video, and the buttons that start a job (Reroll, Animate, 4K)
parse.py      interactions -> frozen values (options, origin, reference images, request key)
sink.py       DiscordSink: progress and results from the stored job, Discord errors -> ours
community.py  shared servers: /settings, /history, /usage, /cancel, Confirm / Cancel / Send again
sessions.py   creative sessions: /session start|end|show|gallery, the ❤️ vote and Remix
              buttons under an entry, the Remix modal
session_sink.py  a session's card and recap (the core's SessionSink), and an entry's label
              and buttons on its result (EntrySink, the DiscordSink for entries)
texts.py      every Discord-specific sentence and button label

Discord-only, and why:
answers.py    the answers to an interaction (refusal, apology, "thinking…"): Discord wants one
              within 3 s, then takes the rest through its token; Telegram needs none
ui.py         the persistent buttons and their views, and the client they reach us through:
              the twin of the inline keyboards that telegram/texts.py builds
slash.py      the slash commands (options, autocomplete) and `sync_commands` (`genrelay
              discord sync`): Discord registers typed commands once; Telegram's are text,
              parsed by adapters/commands.py, their list set by telegram/adapter.py
shards.py     DISCORD_SHARD_COUNT: the shards an adapter runs, on discord.py's
              AutoShardedClient, and each one's state; Telegram's updates are one stream

Telegram's files with no twin here, and why:
flood.py,     Discord's rate limits are discord.py's own per-route buckets (a 429 is waited
lanes.py,     out up to `max_ratelimit_timeout_s`); nothing of ours budgets requests
window.py
status.py,    Telegram's sink in parts: a status line there is a reply of its own, planned
board.py,     around a group's 20 messages a minute (a board for busy groups), and a refused
results.py    upload falls back photo -> document -> link; here the status is the
              interaction's response, edited, and the one fallback a link: all in sink.py
albums.py     a slash command brings all its attachments in one interaction
inbox.py      Discord never sends an interaction again, so there is nothing to replay
transport.py  discord.py's own aiohttp session serves; Telegram's swaps PTB's httpx for CPU

(The package is `adapters.discord`; absolute imports keep `import discord` the library.)
"""

from __future__ import annotations

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.shards import ShardedGenrelayClient
from adapters.discord.sink import DiscordSink, delivery_error
from adapters.discord.slash import sync_commands
from adapters.discord.ui import GenrelayClient

__all__ = [
    "DiscordAdapter",
    "DiscordSink",
    "GenrelayClient",
    "ShardedGenrelayClient",
    "delivery_error",
    "sync_commands",
]
