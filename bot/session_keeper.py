"""The session loop: ends sessions whose time ran out, posts each recap once, and keeps each
session card current, through the SessionSink of the session's platform. `sessions_once` is
one step (tests call it with a fake clock); `run` drives it. Everything it goes by is in the
store, so a restart resumes it: a session whose end passed meanwhile is ended and recapped
on the first step."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass

from bot.constants import (
    CARD_CLOCK_S,
    CARD_INTERVAL_S,
    DELIVERY_BACKOFF_BASE_S,
    DELIVERY_BACKOFF_CAP_S,
    DELIVERY_MAX_ATTEMPTS,
    RECAP_LEASE_S,
    RECAP_SETTLE_S,
    SESSION_STEP_S,
)
from bot.errors import DeliveryError, PermanentDeliveryError
from bot.loops import StepFailures
from bot.ports import Clock, SessionSink, SessionStore
from bot.session_service import SessionService
from bot.sessions import Session, SessionFigures
from bot.sinks import SinkRegistry

__all__ = ["SessionKeeper"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Shown:
    """What a session's card last showed here, and when (or when it was last tried)."""

    at: float
    figures: tuple[int, int, float, int, bool] | None  # None: the last try failed
    minutes_left: int


class SessionKeeper:
    """`register(sink)` per platform (cards and recaps of other platforms wait for a process
    that has their sink); `sessions_once(now)` does what is due; `wake()` asks for a step now."""

    def __init__(
        self,
        store: SessionStore,
        sessions: SessionService,
        clock: Clock,
        *,
        card_interval_s: float = CARD_INTERVAL_S,
        card_clock_s: float = CARD_CLOCK_S,
        settle_s: float = RECAP_SETTLE_S,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock
        self.card_interval_s = card_interval_s
        self.card_clock_s = card_clock_s
        self.settle_s = settle_s
        self.sinks: SinkRegistry[SessionSink] = SinkRegistry()
        self._shown: dict[str, _Shown] = {}
        self._wake = asyncio.Event()

    def register(self, sink: SessionSink) -> None:
        self.sinks.add(sink.platform, sink)
        self.wake()

    def unregister(self, platform: str, sink: SessionSink | None = None) -> None:
        self.sinks.remove(platform, sink)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Step until cancelled: every SESSION_STEP_S, or sooner when woken."""
        failures = StepFailures("sessions")
        while True:
            self._wake.clear()
            try:
                await self.sessions_once()
            except Exception as exc:
                await failures.failed(exc)
                continue
            failures.ok()
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns when the event is set
            # as the task is cancelled, and the cancellation is lost (the loop never stops).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SESSION_STEP_S):
                    await self._wake.wait()

    async def sessions_once(self, now: float | None = None) -> None:
        """End what is due, post the recaps that are ready, refresh the cards."""
        now = self.clock.now() if now is None else now
        for session in await self.store.sessions_due_to_close(now):
            if await self.store.close_session(session.id, session.ends_at, None, closed_at=now):
                log.info("session %s: its time ran out", session.id)
        for session in await self.store.recaps_due(now, self.sinks, settle_s=self.settle_s):
            await self._recap(session, now)
        for session in await self.store.sessions_with_cards(self.sinks):
            await self._card(session, now)

    # -- the recap ---------------------------------------------------------------------------

    async def _recap(self, session: Session, now: float) -> None:
        sink = self.sinks.get(session.platform)
        attempt = await self.store.claim_recap(session.id, now, RECAP_LEASE_S) if sink else 0
        if sink is None or not attempt:
            return  # another process has it (or had it a moment ago)
        try:
            recap = await self.sessions.recap(session)
            await sink.post_recap(recap)
        except PermanentDeliveryError as exc:
            log.warning("session %s: recap given up (%s)", session.id, exc)
        except Exception as exc:
            if attempt < DELIVERY_MAX_ATTEMPTS:
                hint = exc.retry_after if isinstance(exc, DeliveryError) else None
                wait = hint or min(
                    DELIVERY_BACKOFF_BASE_S * 2 ** (attempt - 1), DELIVERY_BACKOFF_CAP_S
                )
                await self.store.postpone_recap(session.id, now + wait)
                log.info(
                    "session %s: recap not posted (%s); trying again in %.0f s",
                    session.id,
                    type(exc).__name__,
                    wait,
                )
                return
            log.warning("session %s: recap given up after %d tries", session.id, attempt)
        else:
            log.info("session %s: recap posted (%d entries shown)", session.id, len(recap.top))
        await self.store.recap_done(session.id, self.clock.now())

    # -- the card ----------------------------------------------------------------------------

    def _due(self, figures: SessionFigures, now: float) -> _Shown | None:
        """What the card would show now, when it is due to be shown (else None)."""
        s = figures.session
        is_open = s.open and s.ends_at > now
        key = (figures.entries, figures.people, round(figures.spent_usd, 2), figures.votes, is_open)
        minutes = math.ceil((s.ends_at - now) / 60) if is_open else 0
        shown = self._shown.get(s.id)
        if shown is None:
            return _Shown(now, key, minutes)
        since = now - shown.at
        if shown.figures != key and since >= self.card_interval_s:
            return _Shown(now, key, minutes)
        if shown.minutes_left != minutes and since >= self.card_clock_s:
            return _Shown(now, key, minutes)
        return None

    async def _card(self, session: Session, now: float) -> None:
        sink = self.sinks.get(session.platform)
        figures = await self.store.session_figures(session.id)
        if sink is None or figures is None:
            return
        due = self._due(figures, now)
        if due is None:
            return
        first = figures.session.card_message_id is None
        if first and due.figures is not None and not due.figures[-1]:
            await self._card_done(session.id)  # it ended before it had a card: the recap says it
            return
        if first and not await self.store.claim_card(session.id, now, RECAP_LEASE_S):
            return  # being posted by another process
        try:
            message_id = await sink.show_card(figures)
        except PermanentDeliveryError as exc:
            log.warning("session %s: card given up (%s)", session.id, exc)
            await self._card_done(session.id)
            return
        except Exception as exc:
            log.info("session %s: card not shown (%s)", session.id, type(exc).__name__)
            self._shown[session.id] = _Shown(now, None, due.minutes_left)  # after the interval
            if first:
                await self.store.release_card(session.id)
            return
        if message_id and message_id != figures.session.card_message_id:
            await self.store.set_card_message(session.id, message_id)
        elif first:
            await self.store.release_card(session.id)  # nothing was posted: try again
        self._shown[session.id] = due
        if due.figures is not None and not due.figures[-1]:
            await self._card_done(session.id)

    async def _card_done(self, session_id: str) -> None:
        await self.store.card_final(session_id)
        self._shown.pop(session_id, None)
