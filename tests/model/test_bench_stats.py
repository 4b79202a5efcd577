"""The benchmark's statistics: pairs divide next to each other, spreads and gaps say what they should."""

from __future__ import annotations

import pytest

from model.bench_stats import gaps, pair_ratios, spread, worst_gap_ratio


def test_each_run_is_divided_by_the_run_it_was_paired_with_not_the_best_one():
    # A slow moment hits both runs of pair 2: paired, it cancels out.
    cached = [0.2, 2.0, 0.2]
    uncached = [1.0, 10.0, 1.0]
    assert pair_ratios(cached, uncached) == pytest.approx([0.2, 0.2, 0.2])
    assert spread(pair_ratios(cached, uncached)).median == pytest.approx(0.2)


def test_a_spread_reports_min_median_and_max_of_the_same_rounds():
    summary = spread([3.0, 1.0, 2.0, 10.0])
    assert (summary.min, summary.median, summary.max, summary.count) == (1.0, 2.5, 10.0, 4)
    assert summary.as_dict() == {"min": 1.0, "median": 2.5, "max": 10.0, "n": 4}


def test_runs_that_do_not_pair_up_or_divide_by_zero_are_refused():
    with pytest.raises(ValueError, match="pair up"):
        pair_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="zero"):
        pair_ratios([1.0], [0.0])
    with pytest.raises(ValueError):
        spread([])


def test_gaps_are_the_intervals_between_arrivals():
    assert gaps([1.0, 1.5, 3.0]) == pytest.approx([0.5, 1.5])
    assert gaps([1.0]) == []


def test_the_worst_gap_counts_only_while_the_newcomer_joins():
    # Steady 0.1 s gaps, one 0.5 s stall while the newcomer (window 1.0-1.4) joins, one 0.9 s stall later.
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.4, 1.5, 1.6, 1.7, 1.8, 2.7, 2.8]
    assert worst_gap_ratio(times, (1.0, 1.4)) == pytest.approx(5.0)
    # A stall that began before the newcomer arrived and ended during its prefill overlaps the window.
    assert worst_gap_ratio(times, (1.2, 1.3)) == pytest.approx(5.0)
    assert worst_gap_ratio(times, (2.0, 2.5)) == pytest.approx(9.0)


def test_a_gap_ratio_needs_a_row_that_streamed_through_the_window():
    with pytest.raises(ValueError, match="three"):
        worst_gap_ratio([0.0, 0.1], (0.0, 1.0))
    with pytest.raises(ValueError, match="window"):
        worst_gap_ratio([0.0, 0.1, 0.2], (5.0, 6.0))
