"""Latency measurement: warm-up, repeated runs, robust statistics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Wall-clock latency of repeated calls, in milliseconds."""

    median: float
    p90: float
    min: float
    max: float
    runs: int

    @property
    def spread(self) -> float:
        """(p90 - median) / median: how noisy the runs were."""
        return (self.p90 - self.median) / self.median if self.median else 0.0

    def to_json(self) -> dict:
        return {
            "median": round(self.median, 3),
            "p90": round(self.p90, 3),
            "min": round(self.min, 3),
            "max": round(self.max, 3),
            "runs": self.runs,
        }


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(fn: Callable[[], object], runs: int, warmup: int) -> Latency:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return Latency(
        median=statistics.median(times), p90=percentile(times, 90), min=min(times), max=max(times), runs=runs
    )
