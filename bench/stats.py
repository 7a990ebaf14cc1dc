"""Percentiles of samples and summaries of repetitions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/min/max in milliseconds of latencies given in seconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples": len(ms),
    }


def spread(values: Sequence[Any]) -> dict[str, Any]:
    """Median, min and max of one figure over the repetitions (booleans: all of them)."""
    if all(isinstance(v, bool) for v in values):
        return {
            "median": all(values),
            "min": all(values),
            "max": any(values),
            "values": list(values),
        }
    numbers = [float(v) for v in values]
    return {
        "median": statistics.median(numbers),
        "min": min(numbers),
        "max": max(numbers),
        "values": numbers,
    }
