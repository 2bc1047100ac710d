"""A chat's rules as its admins set them, and what its people made: /settings, /usage and
/history. Part of the use cases `Service` (bot/service.py) offers; the answers are values
(bot/outcomes.py), worded by bot/messages.py."""

from __future__ import annotations

import logging

from bot import messages
from bot.catalog import Catalog
from bot.community import ChatRules, day_start, is_operator, parse_setting, setting_key
from bot.config import Settings
from bot.errors import RequestRejected
from bot.models import Job, Kind, Origin
from bot.outcomes import ChatUsage, SettingChanged, SettingRefusal, UsageReport
from bot.ports import Clock, CommunityStore

__all__ = ["ChatAdmin"]

log = logging.getLogger(__name__)


class ChatAdmin:
    """Reads and changes a chat's rules, and counts what its people made today."""

    def __init__(
        self, store: CommunityStore, catalog: Catalog, clock: Clock, settings: Settings
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.settings = settings
        self.default_rules = ChatRules.defaults(settings)

    async def rules(self, origin: Origin) -> ChatRules:
        """This chat's rules: the service's defaults with what its admins changed."""
        stored = await self.store.chat_settings(origin.platform, origin.scope_id)
        return self.default_rules.merged(stored)

    def is_operator(self, origin: Origin) -> bool:
        return is_operator(origin, self.settings.operator_ids)

    async def change_setting(
        self, origin: Origin, name: str, value: str, *, is_admin: bool
    ) -> SettingChanged:
        """Set one of the chat's rules; only its admins (or an operator) may."""
        if not (is_admin or self.is_operator(origin)):
            raise RequestRejected(messages.NOT_ADMIN_SETTINGS, code="not_admin")
        parsed = parse_setting(name, value, self.catalog)
        if isinstance(parsed, SettingRefusal):
            raise RequestRejected(messages.setting_refusal_text(parsed), code="bad_setting")
        key = setting_key(name)
        stored = await self.store.chat_settings(origin.platform, origin.scope_id)
        stored[key] = parsed
        await self.store.save_chat_settings(
            origin.platform, origin.scope_id, stored, by=origin.user_id, now=self.clock.now()
        )
        log.info(
            "chat %s %s: %s changed by %s", origin.platform, origin.scope_id, key, origin.user_id
        )
        return SettingChanged(key, tuple(parsed) if isinstance(parsed, list) else parsed)

    async def history(self, origin: Origin, limit: int = 10) -> list[Job]:
        return await self.store.user_history(
            origin.platform, origin.scope_id, origin.user_id, limit
        )

    async def usage(self, origin: Origin) -> UsageReport:
        """/usage: the asker's jobs and spend in this chat today, against its limits."""
        now = self.clock.now()
        since = day_start(now)
        rules = await self.rules(origin)
        rows = await self.store.usage_by_user(origin.platform, origin.scope_id, since)
        mine = next((r for r in rows if r.user_id == origin.user_id), None)
        jobs_today = [j for j in await self.history(origin, 200) if j.created_at >= since]
        left = 0.0
        if rules.chat_budget_usd:
            spent = await self.store.spend(
                since, platform=origin.platform, scope_id=origin.scope_id
            )
            left = max(rules.chat_budget_usd - spent, 0)
        return UsageReport(
            images=sum(1 for j in jobs_today if j.kind is Kind.IMAGE),
            images_allowed=rules.user_images_per_day,
            videos=sum(1 for j in jobs_today if j.kind is Kind.VIDEO),
            videos_allowed=rules.user_videos_per_day,
            spend_usd=mine.spend_usd if mine else 0,
            budget_usd=rules.chat_budget_usd,
            budget_left_usd=left,
            now=now,
        )

    async def chat_usage(self, origin: Origin, *, is_admin: bool) -> ChatUsage:
        """/usage chat: everyone's jobs and spend here today; for admins (and operators)."""
        if not (is_admin or self.is_operator(origin)):
            raise RequestRejected(messages.NOT_ADMIN_USAGE, code="not_admin")
        since = day_start(self.clock.now())
        rows = await self.store.usage_by_user(origin.platform, origin.scope_id, since)
        return ChatUsage(
            rows=tuple(rows),
            jobs=sum(r.jobs for r in rows),
            spend_usd=sum(r.spend_usd for r in rows),
        )
