"""The benchmark workload: realistic, varied runs of a 2-minute video and a 20-second image.

Durations vary around the model's typical run (log-normal, sigma 0.25, within 0.5x..1.6x:
about +-30 % for most runs, +-50 % for some). Progress curves are what gateways really
report: linear, front-loaded, back-loaded, S-shaped, coarse steps, stalls, jumps, a long
sit at 99, and 100 well before the result link exists (the late-URL quirk).
Each curve maps the elapsed share of the run (0..1; the sandbox reports `queued` for the
first 10 %) to a percentage.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CLASSES", "CURVES", "RunSpec", "make_runs"]

Curve = Callable[[float], int]


def _linear(f: float) -> int:
    return int(100 * f)


def _front_loaded(f: float) -> int:
    return int(100 * (1 - (1 - f) ** 1.5))


def _back_loaded(f: float) -> int:
    return int(100 * f**1.5)


def _s_curve(f: float) -> int:
    return int(100 * f * f * (3 - 2 * f))


def _steps(f: float) -> int:
    """Reported in steps of 10."""
    return int(100 * f) // 10 * 10


def _stall(f: float) -> int:
    """Stops at 40 % of the run for 15 % of it (waiting for a worker), then goes on."""
    speed = 100 / 0.85
    if f < 0.4:
        return int(speed * f)
    if f < 0.55:
        return int(speed * 0.4)
    return min(int(speed * (f - 0.15)), 99)


def _jump(f: float) -> int:
    """Linear to 50 %, then a leap to 85 (the gateway skips a phase), then on to 99."""
    if f < 0.5:
        return int(100 * f)
    return int(85 + (f - 0.5) / 0.5 * 14)


def _sits_at_99(f: float) -> int:
    """Done with the frames at 85 %, then sits at 99 while the file is encoded."""
    return min(99, int(100 * f / 0.85))


def _late_url(f: float) -> int:
    """Reads 100 from 98 % of the run on, while the link is not there yet."""
    return 100 if f >= 0.98 else int(100 * f / 0.98)


CURVES: dict[str, tuple[Curve, float]] = {
    # name: (curve, share of the runs)
    "linear": (_linear, 0.27),
    "front-loaded": (_front_loaded, 0.15),
    "back-loaded": (_back_loaded, 0.10),
    "s-curve": (_s_curve, 0.10),
    "steps": (_steps, 0.08),
    "stall": (_stall, 0.08),
    "jump": (_jump, 0.08),
    "sits-at-99": (_sits_at_99, 0.06),
    "late-url": (_late_url, 0.08),
}

# (label, model, kind, typical seconds)
CLASSES: tuple[tuple[str, str, str, float], ...] = (
    ("video ~2 min", "veo", "video", 120.0),
    ("image ~20 s", "nanobanana", "image", 20.0),
)


@dataclass(frozen=True, slots=True)
class RunSpec:
    label: str
    model: str
    kind: str
    duration: float  # seconds, on the benchmark's clock
    curve_name: str
    curve: Curve
    offset: float  # when it is submitted, seconds after the start


def make_runs(jobs: int, *, seed: int = 7, spread_s: float = 60.0) -> list[RunSpec]:
    """`jobs` runs per class, submitted at random over `spread_s` seconds."""
    rng = random.Random(seed)
    names = list(CURVES)
    weights = [CURVES[n][1] for n in names]
    runs: list[RunSpec] = []
    for label, model, kind, typical in CLASSES:
        for _ in range(jobs):
            factor = min(max(math.exp(rng.gauss(0.0, 0.25)), 0.5), 1.6)
            name = rng.choices(names, weights)[0]
            runs.append(
                RunSpec(
                    label=label,
                    model=model,
                    kind=kind,
                    duration=typical * factor,
                    curve_name=name,
                    curve=CURVES[name][0],
                    offset=rng.uniform(0.0, spread_s),
                )
            )
    runs.sort(key=lambda r: r.offset)
    return runs
