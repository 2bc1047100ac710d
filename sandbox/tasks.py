"""The sandbox's tasks: what a test scripts, what a task is, and how it moves with the clock.

Time is read from an injected clock, so a test moves a task along by moving the clock:
queued for the first 10% of the duration, then running with a rising progress, then (for
``late_url_polls`` polls) running at progress 100 with no result URL, then terminal.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sandbox.wire import (
    FAIL_CODE,
    FAIL_MESSAGE,
    NANOBANANA_ALIASES,
    REFUND_CODE,
    REFUND_MESSAGE,
    VEO_REF_PREFIX,
)

__all__ = [
    "DEFAULT_DURATIONS",
    "QUEUED_FRACTION",
    "SLOW_FACTOR",
    "Outcome",
    "ProgressCurve",
    "SandboxTask",
    "TaskBoard",
    "TaskFamily",
    "TaskScript",
    "is_known_model",
    "keyword_outcome",
    "new_task_id",
]

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "refunded"]
TaskFamily = Literal["sora", "video", "image_async", "image_sync"]
# A callable maps the elapsed fraction of the duration (0..1) to a percentage; a sequence
# gives the progress of successive polls while running (its last value repeats).
ProgressCurve = Callable[[float], int] | Sequence[int]

DEFAULT_DURATIONS: Mapping[str, float] = {
    "sora_studio": 8.0,
    "sora_fast": 8.0,
    "veo": 6.0,
    "veo_fast": 4.0,
    "veo_reference": 6.0,
    "gpt-image-2": 2.0,
    "nanobanana": 2.0,
    "nanobanana_pro": 3.0,
}
QUEUED_FRACTION = 0.1
SLOW_FACTOR = 10.0


@dataclass
class TaskScript:
    """How the next created task behaves; queued by ``SandboxGateway.script_next``."""

    outcome: Outcome = "succeeded"
    duration: float | None = None
    late_url_polls: int | None = None
    progress_curve: ProgressCurve | None = None


@dataclass
class SandboxTask:
    """One generation as the sandbox sees it; views render it in each family's shape."""

    task_id: str
    family: TaskFamily
    model: str
    prompt: str
    created: float
    created_wall: datetime
    created_unix: int
    duration: float
    outcome: Outcome
    late_url_polls: int
    progress_curve: ProgressCurve | None = None
    image_urls: list[str] = field(default_factory=list)
    reference_image_name: str | None = None
    aspect_ratio: str | None = None
    quality: str | None = None
    price_usd: float = 0.0
    # state, advanced by the gateway
    status: str = "queued"
    progress: int = 0
    result_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    refunded_usd: float = 0.0
    updated: float = 0.0
    finished: float | None = None
    polls: int = 0
    running_polls: int = 0
    late_polls_served: int = 0

    @property
    def is_video(self) -> bool:
        return self.family in ("sora", "video")

    @property
    def terminal(self) -> bool:
        return self.finished is not None

    def wall(self, at: float) -> str:
        """Server-local ISO datetime (no zone) of clock reading ``at``."""
        moment = self.created_wall + timedelta(seconds=max(at - self.created, 0.0))
        return moment.isoformat(timespec="seconds")


def is_known_model(model: str) -> bool:
    return (
        model in DEFAULT_DURATIONS
        or model in NANOBANANA_ALIASES
        or model.startswith(VEO_REF_PREFIX)
    )


def keyword_outcome(prompt: str) -> Outcome:
    lowered = prompt.lower()
    if "[fail]" in lowered:
        return "failed"
    if "[refund]" in lowered:
        return "refunded"
    return "succeeded"


def new_task_id(family: TaskFamily, seq: int, wall: datetime) -> str:
    """A task id in the shape the real gateway gives tasks of ``family``."""
    day = wall.strftime("%Y%m%d")
    if family == "sora":
        return f"task_{day}{seq:04d}_{secrets.token_hex(4)}"
    if family == "video":
        return f"evt_{day}_{seq:04x}{secrets.token_hex(2)}"
    return f"evt_{day}_img{seq:04x}{secrets.token_hex(2)}"


class TaskBoard:
    """The tasks of one gateway, created from scripts and advanced by its clock.

    ``SandboxGateway`` is the board with an HTTP server around it; it keeps a finished
    task's result file in ``_store_result``.
    """

    def __init__(
        self,
        *,
        speed: float,
        durations: dict[str, float] | None,
        clock: Callable[[], float],
        late_url_polls: int,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if late_url_polls < 0:
            raise ValueError("late_url_polls must be >= 0")
        for name, value in (durations or {}).items():
            if not is_known_model(name):
                raise ValueError(f"durations: unknown model {name!r}")
            if value < 0:
                raise ValueError(f"durations: {name} must be >= 0")
        self.speed = speed
        self.durations: dict[str, float] = {**DEFAULT_DURATIONS, **(durations or {})}
        self.clock = clock
        self.late_url_polls = late_url_polls
        self.tasks: dict[str, SandboxTask] = {}
        self._scripts: deque[TaskScript] = deque()
        self._seq = 0

    def script_next(
        self,
        outcome: Outcome = "succeeded",
        duration: float | None = None,
        late_url_polls: int | None = None,
        progress_curve: ProgressCurve | None = None,
    ) -> TaskScript:
        """Queue how the next created task behaves (FIFO; wins over prompt keywords)."""
        if outcome not in ("succeeded", "failed", "refunded"):
            raise ValueError(f"unknown outcome {outcome!r}")
        script = TaskScript(outcome, duration, late_url_polls, progress_curve)
        self._scripts.append(script)
        return script

    def finish(self, task_id: str, outcome: Outcome = "succeeded") -> SandboxTask:
        """End a task now with ``outcome`` (no late-URL polls)."""
        task = self.tasks[task_id]
        if task.terminal:
            raise ValueError(f"task {task_id} already finished ({task.status})")
        self._terminate(task, outcome, self.clock())
        return task

    def duration_for(self, model: str) -> float:
        """Base duration of ``model`` times ``speed``."""
        key = model
        if model not in self.durations and model.startswith(VEO_REF_PREFIX):
            key = "veo_reference"
        return self.durations[key] * self.speed

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _create_task(
        self,
        family: TaskFamily,
        model: str,
        prompt: str,
        *,
        image_urls: list[str],
        reference_image_name: str | None = None,
        aspect_ratio: str | None = None,
        quality: str | None = None,
        price_usd: float = 0.0,
        task_id: str | None = None,
    ) -> SandboxTask:
        now, wall = self.clock(), datetime.now()
        seq = self._next_seq()
        if task_id is None:
            task_id = new_task_id(family, seq, wall)
        script = self._scripts.popleft() if self._scripts else TaskScript(keyword_outcome(prompt))
        duration, late = self._plan(family, model, prompt, script)
        task = SandboxTask(
            task_id=task_id,
            family=family,
            model=model,
            prompt=prompt,
            created=now,
            created_wall=wall.replace(microsecond=0),
            created_unix=int(time.time()),
            duration=max(duration, 0.0),
            outcome=script.outcome,
            late_url_polls=max(late, 0),
            progress_curve=script.progress_curve,
            image_urls=image_urls,
            reference_image_name=reference_image_name,
            aspect_ratio=aspect_ratio,
            quality=quality,
            price_usd=price_usd,
            updated=now,
        )
        self.tasks[task_id] = task
        log.info(
            "sandbox task created task_id=%s model=%s outcome=%s duration=%.2f",
            task_id,
            model,
            task.outcome,
            task.duration,
        )
        return task

    def _plan(
        self, family: TaskFamily, model: str, prompt: str, script: TaskScript
    ) -> tuple[float, int]:
        """The duration and late-URL polls of a new task: its script's, else the defaults."""
        duration = self.duration_for(model)
        if script.duration is not None:
            duration = script.duration
        elif "[slow]" in prompt.lower():
            duration *= SLOW_FACTOR
        if family == "image_sync":
            late = 0  # nothing polls a synchronous call
        elif script.late_url_polls is not None:
            late = script.late_url_polls
        else:
            late = self.late_url_polls if family == "sora" else 0
        return duration, late

    def _advance(self, task: SandboxTask, now: float, *, poll: bool) -> None:
        if task.terminal:
            return
        elapsed = now - task.created
        running = "processing" if task.family == "sora" else "running"
        if elapsed >= task.duration:
            if task.late_polls_served < task.late_url_polls:
                if poll:
                    task.late_polls_served += 1
                self._set_state(task, running, 100, now)
                return
            self._terminate(task, task.outcome, now)
            return
        if elapsed < QUEUED_FRACTION * task.duration:
            self._set_state(task, "queued", 0, now)
            return
        fraction = elapsed / task.duration if task.duration > 0 else 1.0
        curve = task.progress_curve
        if curve is None:
            progress = min(max(int(fraction * 100), 1), 99)
        elif callable(curve):
            progress = int(curve(fraction))
        else:
            progress = int(curve[min(task.running_polls, len(curve) - 1)]) if curve else 0
        if poll:
            task.running_polls += 1
        self._set_state(task, running, min(max(progress, 0), 100), now)

    @staticmethod
    def _set_state(task: SandboxTask, status: str, progress: int, now: float) -> None:
        if (task.status, task.progress) != (status, progress):
            task.status, task.progress, task.updated = status, progress, now

    def _terminate(self, task: SandboxTask, outcome: Outcome, now: float) -> None:
        task.outcome = outcome
        task.finished = task.updated = now
        if outcome == "succeeded":
            task.status = "completed" if task.family == "sora" else "succeeded"
            task.progress = 100
            task.result_url = self._store_result(task, now)
        elif outcome == "failed":
            task.status = "failed"
            task.error_code, task.error_message = FAIL_CODE, FAIL_MESSAGE
        else:
            task.status = "refunded"
            task.error_code, task.error_message = REFUND_CODE, REFUND_MESSAGE
            task.refunded_usd = task.price_usd
        log.info("sandbox task finished task_id=%s status=%s", task.task_id, task.status)

    def _store_result(self, task: SandboxTask, now: float) -> str:
        """Keep the result file of a task that succeeded at ``now``; return its URL."""
        raise NotImplementedError("the server keeps result files")
