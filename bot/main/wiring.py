"""Builds the store, the catalog, the core and the chat adapters from Settings, and hands
them to each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.app import Core
from bot.catalog import Catalog, default_specs
from bot.config import Settings
from bot.gateway.aggregator import aggregator_specs
from bot.gateway.base import Gateway
from bot.leases import LeasedAdapter, LeaseKeeper
from bot.owners import Owners
from bot.polling import PollPolicy
from bot.ports import ChatAdapter, Clock, SystemClock
from bot.supervisor import AdapterSupervisor
from storage.postgres import PostgresJobStore
from storage.sqlite import SqliteJobStore

if TYPE_CHECKING:
    from adapters.telegram.webhook import TelegramWebhook

__all__ = ["build_adapters", "build_catalog", "job_store", "open_core", "telegram_webhook"]


def build_catalog(settings: Settings) -> Catalog:
    """Every model: the AA gateway's, then AGGREGATOR_MODELS, with MODEL_PRICES applied."""
    specs = default_specs(
        image_deadline_s=settings.image_deadline_s, video_deadline_s=settings.video_deadline_s
    )
    extra = aggregator_specs(
        settings.aggregator_entries(),
        taken=specs,
        image_deadline_s=settings.image_deadline_s,
        video_deadline_s=settings.video_deadline_s,
    )
    return Catalog(
        specs + extra,
        prices=settings.prices(),
        default_image=settings.default_image_model,
        default_video=settings.default_video_model,
    )


def job_store(
    settings: Settings, *, own_jobs_only: bool = False, owners: Owners | None = None
) -> SqliteJobStore | PostgresJobStore:
    """The job store of DATABASE_URL (a sqlite:/// file, or a postgresql:// database), not
    yet open. `own_jobs_only` (a `genrelay generate`): it claims only this process's jobs.
    `owners`: which processes still run (the Core's)."""
    owners = owners or Owners()
    only_owner = owners.name if own_jobs_only else None
    if settings.database_engine == "postgresql":
        return PostgresJobStore(
            settings.database_url,
            default_chat_concurrency=settings.chat_concurrent_jobs,
            only_owner=only_owner,
            owner_alive=owners.another_alive,
            claimer=owners.name,
        )
    return SqliteJobStore(
        settings.database_path,
        default_chat_concurrency=settings.chat_concurrent_jobs,
        only_owner=only_owner,
        owner_alive=owners.another_alive,
        claimer=owners.name,
        busy_timeout_ms=int(settings.database_busy_timeout_s * 1000),
    )


def open_core(
    settings: Settings,
    *,
    clock: Clock | None = None,
    policy: PollPolicy | None = None,
    gateways: dict[str, Gateway] | None = None,
    own_jobs_only: bool = False,
    owners: Owners | None = None,
) -> Core:
    """The core on the job store and catalog of `settings`; `async with` opens it. `owners`:
    this process's name and host (by default its own; a benchmark gives each replica a
    host of its own, as in containers)."""
    clock = clock or SystemClock()
    owners = owners or Owners(clock=clock.now)
    return Core(
        settings,
        store=job_store(settings, own_jobs_only=own_jobs_only, owners=owners),
        catalog=build_catalog(settings),
        clock=clock,
        policy=policy,
        gateways=gateways,
        own_jobs_only=own_jobs_only,
        owners=owners,
    )


def telegram_webhook(core: Core, settings: Settings) -> TelegramWebhook | None:
    """The HTTP route of TELEGRAM_WEBHOOK_URL (webhook mode with a bot token), else None."""
    if settings.telegram_bot_token is None or settings.telegram_webhook_url is None:
        return None
    from adapters.telegram.webhook import TelegramWebhook

    return TelegramWebhook.from_settings(core.store, core.clock, settings)


def build_adapters(
    core: Core, settings: Settings, *, telegram_hook: TelegramWebhook | None = None
) -> list[LeasedAdapter]:
    """A starter for each configured chat platform connection, run while this replica
    holds its lease (`telegram`, `discord`, or `discord:shard:<i>` for each shard). Each
    builds its first adapter now, so a setting it cannot take (TELEGRAM_ACK_REACTION,
    webhook mode without `telegram_hook`, the route on our HTTP server) raises ConfigError
    before anything runs."""
    makers: list[tuple[str, Callable[[], ChatAdapter]]] = []
    if settings.telegram_bot_token is not None:
        from adapters.telegram import TelegramAdapter

        makers.append(("telegram", lambda: TelegramAdapter(core, settings, webhook=telegram_hook)))
    if settings.discord_bot_token is not None:
        makers += _discord_makers(core, settings)

    def supervised(make: Callable[[], ChatAdapter]) -> Callable[[], AdapterSupervisor]:
        return lambda: AdapterSupervisor(
            make, first_s=settings.adapter_retry_first_s, max_s=settings.adapter_retry_max_s
        )

    leased = []
    for lease, make in makers:
        starter = supervised(make)
        first = starter()
        keeper = LeaseKeeper(core.store, lease, core.owners, core.clock)
        leased.append(LeasedAdapter(keeper, starter, first=first))
    return leased


def _discord_makers(core: Core, settings: Settings) -> list[tuple[str, Callable[[], ChatAdapter]]]:
    """One connection (lease `discord`), or with DISCORD_SHARD_COUNT one adapter per shard
    under lease `discord:shard:<i>`, so replicas share the shards."""
    from adapters.discord import DiscordAdapter

    count = settings.discord_shard_count
    if count is None:
        return [("discord", lambda: DiscordAdapter(core, settings))]

    def shard(i: int) -> Callable[[], ChatAdapter]:
        return lambda: DiscordAdapter(core, settings, shard_ids=[i])

    return [(f"discord:shard:{i}", shard(i)) for i in range(count)]
