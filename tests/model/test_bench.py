"""The benchmark runs every scenario end to end and ends with one line of JSON holding the figures."""

from __future__ import annotations

import json

from model.bench import GOALS, main

HEADLINES = ("followup_ttft_ratio", "preamble_ttft_ratio", "image_step_ratio", "speedup_median", "newcomer_gap_ratio")


def test_bench_runs_its_scenarios_and_prints_the_figures_as_a_last_line_of_json(tiny_checkpoint_chatty, capsys):
    tiny = str(tiny_checkpoint_chatty)
    main([
        "--checkpoint", tiny, "--image-checkpoint", tiny, "--pairs", "2", "--requests", "3",
        "--sequential", "1", "--max-new-tokens", "4", "--history-tokens", "150", "--history-images", "2",
        "--answer-tokens", "2", "--image-rows", "2", "--images-per-row", "2", "--step-tokens", "4",
    ])  # fmt: skip
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(HEADLINES) == set(GOALS)
    for key in HEADLINES:
        assert isinstance(figures[key], float) and figures[key] > 0, key
        stem = key.removesuffix("_median")
        assert figures[f"{stem}_min"] <= figures[key] <= figures[f"{stem}_max"], key
        assert isinstance(figures["goals"][key]["met"], bool)
    scenarios = figures["scenarios"]
    assert all(scenarios[name]["ratio"]["n"] == 2 for name in scenarios)  # every figure from the same rounds
    # The headline is the median of per-pair ratios, not a ratio of medians or of best runs.
    assert figures["followup_ttft_ratio"] == scenarios["followup"]["ratio"]["median"]
    assert figures["speedup_median"] == scenarios["speedup"]["ratio"]["median"]
    assert scenarios["followup"]["prompt_tokens"]["min"] >= 150  # the history plus the previous answer
    assert figures["generate_tokens_per_s"] > 0 and figures["batched_tokens_per_s"] > 0
    assert figures["device"] == "cpu" and figures["text_model"]["checkpoint_params"] > 0
