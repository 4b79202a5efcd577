"""The benchmark's statistics: ratios of interleaved pairs, and inter-token gaps, as pure functions.

A busy machine makes any single timing unreliable, and comparing the best run of A with the best run of B
compares two different moments. So the compared runs are interleaved (A B A B ...), each A is divided by
the B measured right next to it, and what is reported is the spread of those per-pair ratios
(min / median / max). Every figure of a scenario comes from the same rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """The minimum, median and maximum of a few measurements (ratios, seconds, tokens/s)."""

    min: float
    median: float
    max: float
    count: int

    def as_dict(self, digits: int = 4) -> dict:
        return {
            "min": round(self.min, digits),
            "median": round(self.median, digits),
            "max": round(self.max, digits),
            "n": self.count,
        }


def spread(values: Sequence[float]) -> Spread:
    """The spread of `values` (at least one)."""
    if not values:
        raise ValueError("no measurements to summarise")
    return Spread(min(values), statistics.median(values), max(values), len(values))


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Each run of A divided by the run of B it was paired with (same round, next to it)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} runs of A but {len(denominators)} of B: they must pair up")
    if any(b <= 0 for b in denominators):
        raise ValueError("a paired measurement was zero or negative; cannot divide by it")
    return [a / b for a, b in zip(numerators, denominators)]


def gaps(times: Sequence[float]) -> list[float]:
    """The intervals between consecutive arrival times (sorted as given)."""
    return [later - earlier for earlier, later in zip(times, times[1:])]


def worst_gap_ratio(times: Sequence[float], window: tuple[float, float]) -> float:
    """The longest gap that overlaps `window` (start, end) divided by the median of all gaps.

    `times` are one row's token arrival times; `window` is when something else (a newcomer's prefill)
    could have held the row up. A gap overlaps the window when it ends after the start and begins before
    the end, so a stall that began just before the newcomer arrived still counts.
    """
    intervals = gaps(times)
    if len(intervals) < 2:
        raise ValueError("need at least three arrival times to compare one gap with the others")
    start, end = window
    during = [gap for gap, (t0, t1) in zip(intervals, zip(times, times[1:])) if t1 > start and t0 < end]
    if not during:
        raise ValueError("no gap overlaps the window: the row ended before the newcomer arrived")
    typical = statistics.median(intervals)
    if typical <= 0:
        raise ValueError("the row's median gap is zero: its tokens were not timed one by one")
    return max(during) / typical
