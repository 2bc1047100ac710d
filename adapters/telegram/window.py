"""A sliding window: at most so many requests in any period, as Telegram counts them. The
budget `FloodControl` (adapters/telegram/flood.py) keeps, one overall and one per group."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = ["EARLY_S", "SlidingWindow"]

EARLY_S = 0.001  # a token due this soon counts as there (timers may fire this early)


@dataclass(slots=True)
class SlidingWindow:
    """At most `capacity` requests in any `period` seconds: a sliding window over the
    times they went, as Telegram counts ("no more than 20 messages per minute in the same
    group"). A token bucket of the same size would let twice as many through in one
    window: a full bucket's burst, then its refill.

    A request is counted from the moment it may go (`spend`) and, once its answer came,
    from then (`settle`): Telegram counted it somewhere in between, so the window never
    frees its place too early, however long the request took to get there."""

    capacity: int
    period: float
    sent: list[list[float]] = field(default_factory=list)  # [time] each, oldest first

    def _expire(self, now: float) -> None:
        gone = 0
        while gone < len(self.sent) and self.sent[gone][0] <= now - self.period:
            gone += 1
        if gone:
            del self.sent[:gone]

    def ready_in(self, now: float, keep: float = 0.0, hold: float = 0.0, weight: int = 1) -> float:
        """Seconds until a request counting as `weight` messages (an album: one per item)
        may go with a `keep` share of the window, or `hold` requests if more, left over
        (never more than all but one, so a small window still serves) (0: now)."""
        self._expire(now)
        keep = min(max(keep * self.capacity, hold), self.capacity - 1.0)
        weight = max(1, min(weight, self.capacity - math.ceil(keep - 1e-9)))
        over = min(len(self.sent) + weight + math.ceil(keep - 1e-9) - self.capacity, len(self.sent))
        if over <= 0:
            return 0.0
        wait = self.sent[over - 1][0] + self.period - now  # when the `over`-th oldest leaves
        return wait if wait > EARLY_S else 0.0

    def spend(self, now: float) -> list[float]:
        """Count a request that goes now; `settle` the returned slot when it is answered."""
        slot = [now]
        self.sent.append(slot)  # settled times are in the past: the order holds
        return slot

    def settle(self, slot: list[float], now: float) -> None:
        """The request of `slot` was answered now: count it from now (if still counted)."""
        for index, held in enumerate(self.sent):
            if held is slot:
                del self.sent[index]
                slot[0] = max(slot[0], now)
                bisect.insort(self.sent, slot)
                return

    def release(self, slot: list[float]) -> None:
        """The request of `slot` never went: its place is free again."""
        for index, held in enumerate(self.sent):
            if held is slot:
                del self.sent[index]
                return

    def full(self, now: float) -> bool:
        """Nothing sent within the window: as if never used."""
        self._expire(now)
        return not self.sent
