"""ABBA timing shared by the micro-benchmarks: sides alternating over rounds, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    """Seconds per call of ``fn``, over ``repeat`` calls (``sync`` waits for the device)."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeat


def abba(
    sides: dict[str, Callable[[], object]], rounds: int, repeat: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds per call of each side: one warm-up call each, then ``rounds`` rounds in
    alternating order (A B, B A, ...), so drifting machine load hits every side alike."""
    for fn in sides.values():  # warm-up
        fn()
    sync()
    times: dict[str, list[float]] = {s: [] for s in sides}
    order = list(sides)
    for r in range(rounds):
        for side in order if r % 2 == 0 else order[::-1]:
            times[side].append(timed(sides[side], repeat, sync))
    return {s: statistics.median(v) for s, v in times.items()}
