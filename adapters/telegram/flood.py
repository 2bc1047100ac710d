"""Flood control: Telegram's rate limits, with new messages served before edits.

Telegram asks a bot to send at most about 30 messages a second in all and 20 a minute in
one group; beyond that it answers 429 with a `retry_after`. python-telegram-bot's
AIORateLimiter keeps to those budgets first come, first served, so in a busy group a
reply or a result waits behind every progress edit queued before it, and a reaction
acknowledging a command waits behind all of them. `FloodControl` keeps to the same
budgets (sliding windows: the overall one, and one per group or channel) but sorts what
it sends into lanes (adapters/telegram/lanes.py): results first, then other messages, then
new status messages, then status edits and deletes, which spend only what results and
replies leave; reactions and requests about no chat go straight through.

Results first, planned rather than raced: a group allows 20 messages a minute, and a
status request there goes only while `1 + expected results` tokens are left, so when five
jobs run in one group, five tokens wait for their results whatever the status lines do;
overall, status traffic leaves as many tokens as results took in the last second, so
while results flow (a burst of images ending) the next ones find theirs free.
`async with turn(chat_id)` waits for a status token before the caller decides what to
send: the text is rendered from the job's state at that moment (an update made moot while
waiting is never sent), and the status request made inside spends the token taken.

Waiters are served by lane, then by arrival; a waiter whose group is out of tokens or
paused does not hold back anyone behind it in other chats. A RetryAfter pauses only the
chat it came from (the overall bucket already keeps the bot under Telegram's overall
rate, so a 429 is that chat's own limit): its requests wait `retry_after`, the request
that hit it is retried in its old place, up to `max_retries` times, then re-raised.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import contextvars
import datetime as dtm
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram.constants import FloodLimit
from telegram.error import NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter

from adapters.telegram.lanes import COSMETIC, ChatKey, Lane, chat_key, lane_of
from adapters.telegram.window import EARLY_S, SlidingWindow

__all__ = ["CalledOff", "FloodControl"]

log = logging.getLogger(__name__)

Result = bool | dict[str, Any] | list[dict[str, Any]]
Callback = Callable[..., Coroutine[Any, Any, Result]]

RETRY_MARGIN_S = 0.1  # on top of Telegram's retry_after, as python-telegram-bot waits
# Each window is counted this much longer than Telegram's, so that requests we let go at a
# window's edge do not reach Telegram inside it after uneven network delays.
WINDOW_MARGIN = 0.05
EDIT_RESERVE = 0.25  # the share of a budget an edit leaves to new messages
MAX_IDLE_CHATS = 512  # chats remembered before idle ones are dropped (AIORateLimiter's figure)


# A status token this task took with `turn()`, for the next status request in that chat.
_PREPAID: contextvars.ContextVar[ChatKey | None] = contextvars.ContextVar(
    "status_prepaid", default=None
)


def _seconds(period: dtm.timedelta | float) -> float:
    return period.total_seconds() if isinstance(period, dtm.timedelta) else float(period)


@dataclass(slots=True)
class _Chat:
    bucket: SlidingWindow | None  # None: no per-chat budget (a private chat)
    paused_until: float = 0.0
    users: int = 0  # requests inside process_request for this chat
    results: int = 0  # tokens kept for results to come (jobs in flight here)

    def idle(self, now: float) -> bool:
        return (
            self.users == 0
            and self.results == 0
            and self.paused_until <= now
            and (self.bucket is None or self.bucket.full(now))
        )


@dataclass(slots=True, order=True)
class _Waiter:
    lane: Lane
    seq: int
    key: ChatKey = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)
    tag: str | None = field(default=None, compare=False)  # what a `turn` was taken for
    weight: int = field(default=1, compare=False)  # messages it counts as (album items)
    # the windows it was counted in, with its place in each (settled once answered)
    slots: list[tuple[SlidingWindow, list[float]]] = field(default_factory=list, compare=False)


def _weight(endpoint: str, data: dict[str, Any]) -> int:
    """How many messages Telegram counts a request as: an album, one per item."""
    if endpoint == "sendMediaGroup":
        return max(1, len(data.get("media") or ()))
    return 1


class CalledOff(Exception):
    """A `turn` waited for something that is over (`FloodControl.call_off`)."""


class FloodControl(BaseRateLimiter[int]):
    """Sliding windows served by lane (see the module docstring). A rate of 0 lifts that limit.
    `rate_limit_args`, like AIORateLimiter's, is the number of RetryAfter retries for one
    request (default `max_retries`)."""

    def __init__(
        self,
        *,
        overall_max_rate: float = FloodLimit.MESSAGES_PER_SECOND,
        overall_time_period: float = 1.0,
        group_max_rate: float = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP,
        group_time_period: float = 60.0,
        max_retries: int = 0,
        max_idle_chats: int = MAX_IDLE_CHATS,
        edit_reserve: float = EDIT_RESERVE,
        window_margin: float = WINDOW_MARGIN,
    ) -> None:
        self.overall_max_rate = overall_max_rate
        self.overall_time_period = overall_time_period
        self.group_max_rate = group_max_rate
        self.group_time_period = group_time_period
        self.max_retries = max_retries
        self.max_idle_chats = max_idle_chats
        self.edit_reserve = edit_reserve
        self.window_margin = window_margin
        self._overall: SlidingWindow | None = None
        self._chats: dict[ChatKey, _Chat] = {}
        self._waiting: list[_Waiter] = []  # sorted by (lane, seq)
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._results: collections.deque[float] = collections.deque()  # when results went

    async def initialize(self) -> None:
        """Nothing to set up: windows are made on first use."""

    async def shutdown(self) -> None:
        """Requests still waiting fail with NetworkError (a delivery is retried later)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.granted.done():
                waiter.granted.set_exception(NetworkError("flood control shut down"))

    @property
    def chats(self) -> int:
        """Chats whose budget or pause is remembered."""
        return len(self._chats)

    @property
    def waiting(self) -> int:
        return sum(not w.granted.done() for w in self._waiting)

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        lane = lane_of(endpoint, data)
        if lane is Lane.ACK:
            return await callback(*args, **kwargs)
        retries = self.max_retries if rate_limit_args is None else rate_limit_args
        if lane is Lane.FREE:
            return await self._free(callback, args, kwargs, endpoint, retries)
        key, is_group = chat_key(data["chat_id"])
        chat = self._chat(key, is_group)
        chat.users += 1
        seq = next(self._seq)  # a retried request keeps its place
        attempt = 0
        prepaid = lane in COSMETIC and _PREPAID.get() == key
        if prepaid:
            _PREPAID.set(None)
        try:
            while True:
                waiter = None
                if not prepaid:
                    waiter = _Waiter(
                        lane, seq, key, self._loop().create_future(), weight=_weight(endpoint, data)
                    )
                    await self._acquire(waiter)
                prepaid = False
                try:
                    return await callback(*args, **kwargs)
                except RetryAfter as exc:
                    if attempt >= retries:
                        log.info(
                            "telegram: flood control on %s in chat %s; gave up after %d retries",
                            endpoint,
                            key,
                            retries,
                        )
                        raise
                    attempt += 1
                    wait = _seconds(exc.retry_after) + RETRY_MARGIN_S
                    log.info(
                        "telegram: flood control on %s in chat %s; chat paused %.1f s (retry %d)",
                        endpoint,
                        key,
                        wait,
                        attempt,
                    )
                    self._pause(chat, wait)
                finally:
                    if waiter is not None:
                        self._settle(waiter)
        finally:
            chat.users -= 1

    @contextlib.asynccontextmanager
    async def turn(
        self, chat_id: int | str, tag: str | None = None, *, new: bool = False
    ) -> AsyncIterator[None]:
        """Wait until a status request may go in this chat and take its token: the next
        status request this task makes in that chat inside the block spends it instead of
        waiting again. Render what to send inside, so it is the newest state. Raises
        CalledOff when `call_off(tag)` comes first (its job is being delivered). `new`:
        for a new message (served before edits)."""
        key, is_group = chat_key(chat_id)
        chat = self._chat(key, is_group)
        chat.users += 1
        try:
            lane = Lane.STATUS if new else Lane.EDIT
            waiter = _Waiter(lane, next(self._seq), key, self._loop().create_future(), tag)
            await self._acquire(waiter)
        finally:
            chat.users -= 1
        token = _PREPAID.set(key)
        try:
            yield
        finally:
            unused = _PREPAID.get() == key  # nothing was sent inside: the token goes back
            _PREPAID.reset(token)
            if unused:
                self._release(waiter)
            else:
                self._settle(waiter)

    def _release(self, waiter: _Waiter) -> None:
        for window, slot in waiter.slots:
            window.release(slot)
        if self._waiting:
            self.dispatch()

    def _settle(self, waiter: _Waiter) -> None:
        """Its request was answered (or never went): count it in its windows from now."""
        now = self._loop().time()
        for window, slot in waiter.slots:
            window.settle(slot, now)
        if self._waiting:
            self.dispatch()  # a window full of requests in flight may have room now

    def call_off(self, tag: str) -> None:
        """Turns still waiting for `tag` raise CalledOff: nothing is sent for them."""
        for waiter in self._waiting:
            if waiter.tag == tag and not waiter.granted.done():
                waiter.granted.set_exception(CalledOff(tag))

    def status_ready(self, chat_id: int | str) -> bool:
        """Whether a status request in this chat would go at once (nothing waits for it)."""
        key, _ = chat_key(chat_id)
        now = self._loop().time()
        overall = self._overall_bucket(now)
        held = self._recent_results(now, overall)
        if overall is not None and overall.ready_in(now, self.edit_reserve, held) > 0:
            return False
        chat = self._chats.get(key)
        if chat is None:
            return True
        if chat.paused_until > now:
            return False
        return (
            chat.bucket is None or chat.bucket.ready_in(now, self.edit_reserve, chat.results) == 0
        )

    def expect_results(self, chat_id: int | str, count: int) -> None:
        """`count` jobs of this chat are in flight: keep a token for each one's result out
        of the reach of status traffic (a group's budget; a private chat has none)."""
        key, is_group = chat_key(chat_id)
        if not is_group and key not in self._chats:
            return
        chat = self._chat(key, is_group)
        chat.results = max(count, 0)
        if self._waiting:
            self.dispatch()

    def expected_results(self, chat_id: int | str) -> int:
        chat = self._chats.get(chat_key(chat_id)[0])
        return chat.results if chat is not None else 0

    async def _free(
        self, callback: Callback, args: Any, kwargs: dict[str, Any], endpoint: str, retries: int
    ) -> Result:
        attempt = 0
        while True:
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                if attempt >= retries:
                    raise
                attempt += 1
                wait = _seconds(exc.retry_after) + RETRY_MARGIN_S
                log.info(
                    "telegram: flood control on %s; retry %d in %.1f s", endpoint, attempt, wait
                )
                await asyncio.sleep(wait)

    # -- the queue -------------------------------------------------------------------------

    @staticmethod
    def _loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def _chat(self, key: ChatKey, is_group: bool) -> _Chat:
        chat = self._chats.get(key)
        if chat is not None:
            return chat
        now = self._loop().time()
        if len(self._chats) >= self.max_idle_chats:
            for old in [k for k, c in self._chats.items() if c.idle(now)]:
                del self._chats[old]
        bucket = None
        if is_group and self.group_max_rate and self.group_time_period:
            bucket = SlidingWindow(
                int(self.group_max_rate),
                _seconds(self.group_time_period) * (1 + self.window_margin),
            )
        chat = self._chats[key] = _Chat(bucket)
        return chat

    def _pause(self, chat: _Chat, seconds: float) -> None:
        chat.paused_until = max(chat.paused_until, self._loop().time() + seconds)

    async def _acquire(self, waiter: _Waiter) -> None:
        bisect.insort(self._waiting, waiter)
        self.dispatch()
        await waiter.granted

    def dispatch(self) -> None:
        """Let every waiter go that may go now, in lane and arrival order, and set a timer
        for the next one that will be able to."""
        loop = self._loop()
        now = loop.time()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        overall = self._overall_bucket(now)
        recent = self._recent_results(now, overall)
        keep: list[_Waiter] = []
        wake: float | None = None
        for index, waiter in enumerate(self._waiting):
            if waiter.granted.done():  # its caller gave up (cancelled)
                continue
            # An edit leaves part of each budget to new messages: a result that comes
            # after a run of progress edits finds tokens waiting for it.
            cosmetic = waiter.lane in COSMETIC
            share, hold = (self.edit_reserve, recent) if cosmetic else (0.0, 0)
            weight = waiter.weight
            if (
                overall is not None
                and (overall_wait := overall.ready_in(now, share, hold, weight)) > 0
            ):
                keep.extend(w for w in self._waiting[index:] if not w.granted.done())
                wake = overall_wait if wake is None else min(wake, overall_wait)
                break
            chat = self._chats[waiter.key]
            bucket = chat.bucket
            wait = max(
                chat.paused_until - now,
                bucket.ready_in(now, share, chat.results if cosmetic else 0, weight)
                if bucket
                else 0.0,
            )
            if wait > EARLY_S:
                keep.append(waiter)
                wake = wait if wake is None else min(wake, wait)
                continue
            for window in (overall, chat.bucket):
                if window is not None:
                    waiter.slots += [(window, window.spend(now)) for _ in range(weight)]
            waiter.granted.set_result(None)
            if waiter.lane is Lane.RESULT:
                self._results.extend([now] * weight)
        self._waiting = keep
        if keep and wake is not None:
            self._timer = loop.call_later(wake, self.dispatch)

    def _recent_results(self, now: float, overall: SlidingWindow | None) -> int:
        """Results let go within the overall window: status traffic leaves as many tokens,
        so while results flow the next ones find theirs free."""
        while self._results and self._results[0] <= now - (overall.period if overall else 0):
            self._results.popleft()
        return len(self._results)

    def _overall_bucket(self, now: float) -> SlidingWindow | None:
        if not (self.overall_max_rate and self.overall_time_period):
            return None
        if self._overall is None:
            self._overall = SlidingWindow(
                int(self.overall_max_rate),
                _seconds(self.overall_time_period) * (1 + self.window_margin),
            )
        return self._overall
