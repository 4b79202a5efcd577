"""The GPU benchmark's pieces, on the CPU: idefics-9b's shapes, the bandwidth bound, the report."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import IdeficsForVisionText2Text

from model.bench_gpu import main
from model.bench_gpu_model import Bound, idefics_9b_config, known_bandwidth_tbps, random_model, weight_bytes


def test_the_config_is_idefics_9b_s_and_has_its_nine_billion_parameters():
    config = idefics_9b_config()
    assert (config.hidden_size, config.intermediate_size) == (4096, 11008)
    assert (config.num_hidden_layers, config.num_attention_heads, config.cross_layer_interval) == (32, 32, 4)
    assert config.vocab_size + config.additional_vocab_size == 32003  # the IDEFICS tokens at 32000-32002
    assert config.max_position_embeddings == 2048 and config.use_resampler
    vision = config.vision_config
    assert (vision.embed_dim, vision.image_size, vision.patch_size, vision.num_hidden_layers) == (1280, 224, 14, 32)
    assert (vision.num_attention_heads, vision.intermediate_size) == (16, 5120)
    perceiver = config.perceiver_config
    assert perceiver.resampler_n_latents == 64 and perceiver.resampler_depth == 6
    assert (perceiver.resampler_n_heads, perceiver.resampler_head_dim) == (16, 96)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = IdeficsForVisionText2Text(config)
    assert len(model.model.gated_cross_attn_layers) == 8
    assert 8.9e9 < sum(p.numel() for p in model.parameters()) < 8.95e9  # idefics-9b: 8.93 B


def test_the_bandwidth_bound_is_weight_bytes_over_bandwidth():
    bound = Bound(weight_bytes=18_000_000_000, bandwidth_bytes_per_s=3.6e12)
    assert bound.step_s == pytest.approx(0.005)
    assert bound.tokens_per_s(1) == pytest.approx(200) and bound.tokens_per_s(8) == pytest.approx(1600)
    assert bound.fraction(800, 8) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("name", "tbps"),
    [
        ("NVIDIA H100 80GB HBM3", 3.35),
        ("NVIDIA H100 PCIe", 2.0),
        ("NVIDIA H200", 4.8),
        ("NVIDIA GH200 480GB", 4.0),
        ("NVIDIA A100-SXM4-80GB", 2.039),
        ("NVIDIA A100 80GB PCIe", 1.935),
        ("NVIDIA L40S", 0.864),
        ("NVIDIA L4", 0.3),
        ("cpu", None),
    ],
)
def test_known_devices_bandwidths_are_found_by_name(name, tbps):
    assert known_bandwidth_tbps(name) == tbps


def test_random_weights_are_made_on_the_device_asked_with_sane_values():
    from model.tiny import build_tokenizer, tiny_config

    model = random_model(tiny_config(build_tokenizer(), "tiny"), "cpu", torch.bfloat16)
    parameters = dict(model.named_parameters())
    assert all(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in parameters.values())
    parameter_bytes = 2 * sum(p.numel() for p in parameters.values())
    assert parameter_bytes <= weight_bytes(model) <= 1.01 * parameter_bytes  # and a few small buffers
    assert all(torch.isfinite(p.float()).all() for p in parameters.values())
    assert float(parameters["lm_head.weight"].float().std()) == pytest.approx(0.3, rel=0.2)  # tiny's range


def test_the_report_has_every_figure_per_precision_and_concurrency(capsys):
    report = main([
        "--config", "tiny", "--device", "cpu", "--dtype", "float32", "--precisions", "bf16",
        "--concurrency", "1,2", "--new-tokens", "3", "--pairs", "1", "--history-tokens", "80",
        "--history-images", "1", "--answer-tokens", "2", "--bandwidth-tbps", "0.05",
    ])  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    assert report["bandwidth_tbps"] == 0.05 and report["bandwidth_from"] == "--bandwidth-tbps"
    run = report["bf16"]
    assert set(run["concurrency"]) == {"1", "2"}
    for level, figures in run["concurrency"].items():
        assert figures["tokens_per_s"] > 0 and figures["step_s"] > 0
        assert figures["of_bound"] == pytest.approx(int(level) / figures["step_s"] / figures["bound_tokens_per_s"], rel=1e-2)
    assert run["bound_step_s"] == pytest.approx(run["weight_bytes"] / 0.05e12, rel=1e-3)
    assert run["dtype"] == "float32" and run["weight_bytes"] > 0
    assert run["followup_ttft_ratio"]["n"] == 1 and run["followup_prompt_tokens"]["min"] >= 80
    assert run["peak_memory_bytes"] is None  # only a GPU has one
