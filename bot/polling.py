"""When to poll next: scheduling policies for jobs that are still running, and backoff for
failures (which is not the policy's business)."""

from __future__ import annotations

import random
from typing import Protocol

from bot.catalog import ModelSpec
from bot.constants import ERROR_BACKOFF_BASE_S, ERROR_BACKOFF_CAP_S
from bot.models import Job

__all__ = ["FixedPolicy", "PollPolicy", "error_backoff"]


class PollPolicy(Protocol):
    name: str

    def first_delay(self, job: Job, spec: ModelSpec) -> float:
        """Seconds from submit to the first poll."""
        ...

    def next_delay(self, job: Job, spec: ModelSpec, now: float) -> float:
        """Seconds until the next poll of a job that is still queued or running."""
        ...


class FixedPolicy:
    """Poll every `interval_s`, the first time after `first_s`."""

    name = "fixed"

    def __init__(self, first_s: float = 3.0, interval_s: float = 5.0) -> None:
        self.first_s = first_s
        self.interval_s = interval_s

    def first_delay(self, job: Job, spec: ModelSpec) -> float:
        return self.first_s

    def next_delay(self, job: Job, spec: ModelSpec, now: float) -> float:
        return self.interval_s


def error_backoff(streak: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter in its upper half: streak 1 -> 1-2 s, 2 -> 2-4 s..."""
    ceiling = min(ERROR_BACKOFF_BASE_S * (2 ** max(streak - 1, 0)), ERROR_BACKOFF_CAP_S)
    return float(ceiling * (0.5 + 0.5 * (rng or random).random()))
