"""The Discord adapter: discord.py's client on the core's event loop. The slash commands
(slash.py) and the buttons (ui.py) reach it through the client, and it hands them to the
handlers: /imagine, /video and the buttons that start a job (Reroll, Animate, 4K) to
generate.py, the community commands and buttons to community.py, /session and the ❤️ and
Remix buttons to sessions.py. The delivery sink and the session sink are registered with the
core while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import aiohttp

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module (voice), deprecated in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

from adapters.discord.answers import apologise
from adapters.discord.community import BUTTONS as COMMUNITY_BUTTONS
from adapters.discord.community import CommunityHandlers
from adapters.discord.generate import STARTS_JOB, GenerateHandlers
from adapters.discord.parse import (
    PLATFORM,
    Choice,
    SlashRequest,
    model_choices,
    option_choices,
)
from adapters.discord.session_sink import DiscordSessionSink, EntrySink
from adapters.discord.sessions import BUTTONS as SESSION_BUTTONS
from adapters.discord.sessions import SessionHandlers
from adapters.discord.shards import (
    IDENTIFY_GAP_S,
    ShardedGenrelayClient,
    ShardState,
    shards_to_run,
)
from adapters.discord.sink import DiscordSink
from adapters.discord.slash import build_tree, pointed_at
from adapters.discord.texts import OOPS_TEXT, models_text
from adapters.discord.ui import GenrelayClient, JobButton
from bot.app import Core
from bot.config import Settings
from bot.errors import ConfigError, PlatformUnavailable
from bot.models import JobAction, Kind

__all__ = ["DiscordAdapter"]

log = logging.getLogger(__name__)


class DiscordAdapter:
    """The Discord client with its commands and buttons; registers a `DiscordSink`.

    Knobs: `ready_timeout_s` (wait for the gateway's READY), `progress_timeout_s` (a
    progress edit is dropped after this), `delivery_timeout_s` (one delivery attempt),
    `max_ratelimit_timeout_s` (the longest 429 wait discord.py sleeps through; it raises
    beyond, and discord.py takes no less than 30), `guild_ready_timeout` (discord.py's wait
    for GUILD_CREATEs before READY).

    `client`: a `GenrelayClient` built outside (a test harness, other intents or a proxy)
    to use instead of building one; it must have no command tree yet. The adapter becomes
    its handler, adds the commands and buttons, logs it in, runs it and closes it at the
    end, as it does its own; `max_ratelimit_timeout_s` and `guild_ready_timeout` are then
    the client's own options (and so are `shard_count` and `shard_ids`: a
    `ShardedGenrelayClient` for shards).

    Shards (shards.py): with DISCORD_SHARD_COUNT set, the client is discord.py's
    `AutoShardedClient` running `shard_ids` (default: every shard), e.g. the shards a lease
    layer says this replica holds; `identify_gap_s` is the wait between two of its
    IDENTIFYs (Discord's 5 s). Unset: one unsharded connection. `connected` is true once
    every shard it runs is READY; `shards` says each one's state. With
    DISCORD_SYNC_ON_START the adapter running shard 0 (or the unsharded one) registers the
    slash commands when it starts, so an application syncs once, not once per replica.
    Several adapters may share one core: each registers its sink (deliveries go through
    REST, whichever shard a job came in on) and leaving takes back only its own.
    """

    platform = PLATFORM

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        ready_timeout_s: float = 30.0,
        progress_timeout_s: float = 2.0,
        delivery_timeout_s: float = 60.0,
        max_ratelimit_timeout_s: float = 30.0,
        guild_ready_timeout: float = 2.0,
        shard_ids: Sequence[int] | None = None,
        identify_gap_s: float = IDENTIFY_GAP_S,
        client: GenrelayClient | None = None,
    ) -> None:
        self.core = core
        self.settings = settings
        self.ready_timeout_s = ready_timeout_s
        self.progress_timeout_s = progress_timeout_s
        self.delivery_timeout_s = delivery_timeout_s
        self.max_ratelimit_timeout_s = max_ratelimit_timeout_s
        self.guild_ready_timeout = guild_ready_timeout
        self.shard_count = settings.discord_shard_count
        if isinstance(client, ShardedGenrelayClient):  # its own options say which shards
            self.shard_count, shard_ids = client.shard_count, client.shard_ids
        elif client is not None:
            self.shard_count = shard_ids = None
        self._shard_ids = shards_to_run(self.shard_count, shard_ids)  # ConfigError at once
        self.identify_gap_s = identify_gap_s
        self._given_client = client
        self._tree: app_commands.CommandTree[GenrelayClient] | None = None
        self._stack = AsyncExitStack()
        self._runner: asyncio.Task[None] | None = None
        self._client: GenrelayClient | None = None
        self._sink: DiscordSink | None = None
        self._community: CommunityHandlers | None = None
        self._generate: GenerateHandlers | None = None
        self._cards: DiscordSessionSink | None = None
        self._sessions: SessionHandlers | None = None
        self._ready = False  # READY came once: a later stop of the client is logged

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def client(self) -> GenrelayClient:
        if self._client is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._client

    @property
    def sink(self) -> DiscordSink:
        if self._sink is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._sink

    @property
    def community(self) -> CommunityHandlers:
        if self._community is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._community

    @property
    def generate(self) -> GenerateHandlers:
        if self._generate is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._generate

    @property
    def cards(self) -> DiscordSessionSink:
        if self._cards is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._cards

    @property
    def sessions(self) -> SessionHandlers:
        if self._sessions is None:
            raise RuntimeError("the Discord adapter is not running")
        return self._sessions

    @property
    def shard_ids(self) -> tuple[int, ...]:
        """The shards this adapter runs, of `shard_count`; () when unsharded."""
        return self._shard_ids

    @property
    def shards(self) -> dict[int, str]:
        """Each shard this adapter runs and its state (`ShardState`); {} when unsharded."""
        client = self._client
        if client is None or client.is_closed():
            return dict.fromkeys(self._shard_ids, str(ShardState.DISCONNECTED))
        states = client.shard_states if isinstance(client, ShardedGenrelayClient) else {}
        return {i: str(states.get(i, ShardState.CONNECTING)) for i in self._shard_ids}

    @property
    def connected(self) -> bool:
        """Connected and READY: every shard it runs, when sharded."""
        client = self._client
        if client is None or not client.is_ready() or client.is_closed():
            return False
        return not isinstance(client, ShardedGenrelayClient) or client.all_ready

    def shards_up(self) -> dict[int, bool]:
        """For /metrics: each shard this adapter runs, up (READY) or not."""
        return {i: state == ShardState.READY for i, state in self.shards.items()}

    async def __aenter__(self) -> DiscordAdapter:
        token = self.settings.discord_bot_token
        if token is None or not token.get_secret_value():
            raise ConfigError("DISCORD_BOT_TOKEN is not set")
        try:
            await self._start(token.get_secret_value())
            if self.settings.discord_sync_on_start and 0 in (self._shard_ids or (0,)):
                await self._sync_commands()
        except BaseException:
            await self._stop()
            raise
        self._take_sinks()
        if self._shard_ids:
            self.core.metrics.watch_shards(self, self.shards_up)
            log.info(
                "discord: connected as %s, shards %s of %s",
                self.client.user,
                ",".join(map(str, self._shard_ids)),
                self.shard_count,
            )
        else:
            log.info("discord: connected as %s", self.client.user)
        return self

    def _make_client(self) -> GenrelayClient:
        client = self._given_client
        if client is not None:
            client.handler = self
            return client
        options: dict[str, Any] = {
            "intents": discord.Intents.default(),
            "guild_ready_timeout": self.guild_ready_timeout,
            "max_ratelimit_timeout": self.max_ratelimit_timeout_s,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if not self._shard_ids:
            return GenrelayClient(self, **options)
        return ShardedGenrelayClient(
            self,
            identify_gap_s=self.identify_gap_s,
            shard_count=self.shard_count,
            shard_ids=list(self._shard_ids),
            **options,
        )

    async def _sync_commands(self) -> None:
        """DISCORD_SYNC_ON_START: register the commands globally. A failure is logged; the
        commands registered before still work, and serving goes on."""
        assert self._tree is not None
        try:
            synced = await self._tree.sync()
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.warning("discord: registering the slash commands failed: %s", exc)
            return
        log.info("discord: registered %d global slash commands", len(synced))

    async def _start(self, token: str) -> None:
        self._stack.enter_context(pointed_at(self.settings))
        client = self._client = self._make_client()
        self._sink = EntrySink(
            client,
            self.core.catalog,
            self.core.clock,
            progress_timeout_s=self.progress_timeout_s,
            delivery_timeout_s=self.delivery_timeout_s,
            fresh=self.core.service.get,
            entry_of=self.core.sessions.entry_for_job,
        )
        self._community = CommunityHandlers(self.core, self._sink)
        self._generate = GenerateHandlers(self.core, self.settings, self._sink)
        self._cards = DiscordSessionSink(
            client, self.core.clock, self.core.media.results_dir, timeout_s=self.delivery_timeout_s
        )
        self._sessions = SessionHandlers(self.core, self._cards, self._generate)
        self._tree = build_tree(client)
        client.add_dynamic_items(JobButton)
        await self._stack.enter_async_context(client)
        self._runner = asyncio.create_task(client.start(token), name="discord-client")
        self._runner.add_done_callback(self._runner_done)
        ready = asyncio.create_task(client.wait_until_ready(), name="discord-ready")
        # Each shard after the first waits its turn to IDENTIFY.
        timeout = self.ready_timeout_s + self.identify_gap_s * max(len(self._shard_ids) - 1, 0)
        try:
            done, _ = await asyncio.wait(
                {ready, self._runner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready in done:
            self._ready = True
            return
        if self._runner in done:
            exc = self._runner.exception()
            if isinstance(exc, discord.LoginFailure):
                raise ConfigError("Discord refused DISCORD_BOT_TOKEN") from None
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "it stopped"
            raise PlatformUnavailable(f"Discord could not be reached ({why})")
        raise PlatformUnavailable(f"Discord was not ready within {timeout:g} s")

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        # Before READY, _start turns the failure into the start's one error.
        if self._ready and not task.cancelled() and task.exception() is not None:
            log.error("discord: the client stopped: %r", task.exception())

    async def stop_intake(self) -> None:
        """Shutting down: nothing to pause. Discord never sends an interaction again, so
        one that comes during the grace is still answered and recorded; the tracker takes
        nothing new meanwhile, and the next process submits it."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hand_back_sinks()
        self.core.metrics.watch_shards(self, None)
        await self._stop()

    def _take_sinks(self) -> None:
        """Deliver and show sessions through ours. Another adapter of this core (other
        shards) may have its own registered: ours serve until we leave, then its again."""
        self.core.notifier.register(self.sink)
        self.core.add_session_sink(self.cards)

    def _hand_back_sinks(self) -> None:
        """Take our sinks (only ours) out of the core."""
        if self._sink is not None:
            self.core.notifier.unregister(PLATFORM, self._sink)
        if self._cards is not None:
            self.core.remove_session_sink(PLATFORM, self._cards)

    async def _stop(self) -> None:
        if self._sessions is not None:
            await self._sessions.aclose()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._stack.aclose()
        self._client = self._sink = self._community = self._generate = None
        self._cards = self._sessions = self._tree = None

    # -- what the commands' options offer ----------------------------------------------------

    def models_text(self) -> str:
        return models_text(self.core.catalog)

    def model_choices(self, kind: Kind, current: str) -> list[Choice]:
        return model_choices(self.core.catalog, kind, current)

    def option_choices(
        self, interaction: discord.Interaction[Any], kind: Kind, field: str, current: str
    ) -> list[Choice]:
        return option_choices(self.core.catalog, interaction, kind, field, current)

    # -- /imagine and /video -----------------------------------------------------------------

    async def on_generate(
        self, interaction: discord.Interaction[Any], command: SlashRequest
    ) -> None:
        generate = self.generate
        try:
            await generate.command(interaction, command)
        except Exception:
            log.exception("discord: interaction %s failed", interaction.id)
            await apologise(interaction, await generate.apology(interaction))

    # -- buttons -----------------------------------------------------------------------------

    async def on_button(
        self, interaction: discord.Interaction[Any], action: JobAction, job_id: str
    ) -> None:
        generate = self.generate
        try:
            if action in COMMUNITY_BUTTONS:
                await self.community.button(interaction, action, job_id)
            elif action in SESSION_BUTTONS:
                await self.sessions.button(interaction, action, job_id)
            else:
                await generate.button(interaction, action, job_id)
        except Exception:
            log.exception("discord: button %s on job %s failed", action, job_id)
            # Reroll, Animate and 4K start a job; Confirm, Cancel and Send again do not.
            starts = action in STARTS_JOB
            text = await generate.apology(interaction) if starts else OOPS_TEXT
            await apologise(interaction, text)
