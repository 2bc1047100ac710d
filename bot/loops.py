"""What a background loop does when one of its steps fails: try again with backoff, and say
so once per spell of failures (not once per try), then once when it works again."""

from __future__ import annotations

import asyncio
import logging

from bot.constants import LOOP_BACKOFF_BASE_S, LOOP_BACKOFF_CAP_S

__all__ = ["StepFailures"]

log = logging.getLogger(__name__)


class StepFailures:
    """`await failed(exc)` after a step raised (logs the first, then waits the backoff);
    `ok()` after a step worked."""

    def __init__(self, loop: str) -> None:
        self.loop = loop
        self.count = 0

    async def failed(self, exc: Exception) -> None:
        self.count += 1
        if self.count == 1:
            log.warning(
                "%s: a step failed (%s: %s); trying again with backoff",
                self.loop,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        await asyncio.sleep(min(LOOP_BACKOFF_BASE_S * 2 ** (self.count - 1), LOOP_BACKOFF_CAP_S))

    def ok(self) -> None:
        if self.count:
            log.info("%s: working again after %d failed steps", self.loop, self.count)
            self.count = 0
