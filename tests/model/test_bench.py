"""The benchmark runs end to end and ends with one line of JSON whose figures add up."""

from __future__ import annotations

import json

from model.bench import main


def test_bench_prints_its_figures_as_a_last_line_of_json(tiny_checkpoint, capsys) -> None:
    main(["--checkpoint", str(tiny_checkpoint), "--requests", "3", "--max-new-tokens", "5", "--repeat", "1"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["tokens_generated"] == {"single": 5, "sequential": 15, "batched": 15}
    assert figures["largest_batch"] == 3
    ratio = figures["batched_tokens_per_s"] / figures["sequential_tokens_per_s"]
    assert abs(figures["speedup"] - ratio) < 0.02
    assert figures["tokens_per_s"] > 0 and figures["ttft_s"] > 0
    assert figures["newcomer_ttft_s"] > 0 and figures["newcomer_long_batch_s"] > 0
    assert figures["device"] == "cpu" and figures["checkpoint_params"] > 0 and figures["torch_threads"] >= 1
