"""`python -m model.bench --gpu-shapes`: the engine on a GPU with idefics-9b's exact shapes, random weights.

For bfloat16 and 4-bit (bitsandbytes NF4), through the real `ModelService`: tokens/s with 1, 8 and 32
requests at once, each decode step against the memory-bandwidth bound (model/bench_gpu_model.py), the
time to first token of a follow-up after a ~1900-token history with 5 images with the prefix cache and
without (model/bench_scenarios.py's follow-up), and the peak GPU memory. Nothing is downloaded; the
model is made on the GPU in seconds. Meant for a lent H100/H200-class GPU (a few minutes there); tests
and CI never need it. `--config tiny` runs the same code on a 64-wide copy, on any device, to try it out.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from model.bench_gpu_model import (
    Bound,
    idefics_9b_config,
    known_bandwidth_tbps,
    loaded_model,
    random_model,
    weight_bytes,
)
from model.bench_scenarios import followup
from model.bench_stats import spread
from model.bench_workload import exactly, first_message, timed
from model.loaded import LoadedModel
from model.service import ModelService

FIXTURE_TOKENIZER = Path(__file__).parents[1] / "tests" / "fixtures" / "llama-tokenizer" / "tokenizer.model"
QUANTIZATIONS = {"bf16": "none", "4bit": "4bit"}


async def throughput(service: ModelService, concurrency: int, new_tokens: int, images: int) -> dict:
    """`concurrency` different requests at once: aggregate tokens/s, and the median row's decode step."""
    conversations = [first_message(6000 + n, images=images) for n in range(concurrency)]
    started = time.perf_counter()
    runs = await asyncio.gather(*(timed(service, c, exactly(new_tokens)) for c in conversations))
    seconds = time.perf_counter() - started
    steps = [run.step_s for run in runs]
    return {
        "tokens_per_s": round(sum(run.tokens for run in runs) / seconds, 2),
        "step_s": _sig(statistics.median(steps)),
        "ttft_s": round(statistics.median(run.ttft_s for run in runs), 4),
        "seconds": round(seconds, 3),
    }


async def measure(loaded: LoadedModel, args: argparse.Namespace) -> dict:
    """Throughput at each concurrency, then the follow-up pairs, on freshly started services."""
    common = dict(max_batch_size=max(args.concurrency), max_images=max(4, args.history_images))
    cached = ModelService(loaded, **common)
    uncached = ModelService(loaded, **common, prefix_cache_bytes=0)
    await cached.start()
    await uncached.start()
    try:
        for service in (cached, uncached):
            await timed(service, first_message(seed=9), exactly(3))
        levels = {}
        for concurrency in args.concurrency:
            levels[str(concurrency)] = await throughput(cached, concurrency, args.new_tokens, args.images)
            print(f"  {concurrency} at once: {levels[str(concurrency)]['tokens_per_s']:.1f} tokens/s, "
                  f"step {levels[str(concurrency)]['step_s'] * 1000:.1f} ms")  # fmt: skip
        pairs = await followup(
            cached, uncached, args.pairs, args.history_tokens, args.history_images, args.answer_tokens
        )
    finally:
        await cached.stop()
        await uncached.stop()
    return {
        "concurrency": levels,
        "followup_ttft_ratio": spread(pairs.ratios).as_dict(),
        "followup_cached_ttft_s": spread(pairs.figures["cached_ttft_s"]).as_dict(),
        "followup_uncached_ttft_s": spread(pairs.figures["uncached_ttft_s"]).as_dict(),
        "followup_prompt_tokens": spread(pairs.figures["prompt_tokens"]).as_dict(),
    }


def run_one(config, tokenizer, label: str, args: argparse.Namespace, bandwidth_tbps: float | None) -> dict:
    """Make the model in one precision, measure it, report, and free the GPU for the next one."""
    cuda = args.device.startswith("cuda")
    started = time.perf_counter()
    model = random_model(config, args.device, _dtype(args.dtype), QUANTIZATIONS[label])
    loaded = loaded_model(model, tokenizer, _dtype(args.dtype), f"random {args.config} shapes ({label})")
    built_s = time.perf_counter() - started
    if cuda:  # from here: serving's peak (4-bit is made in bf16 first, which serving never needs)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stored = weight_bytes(model)
    print(f"{label}: {stored / 1e9:.2f} GB of weights, made in {built_s:.1f} s")
    report = {"dtype": args.dtype, "weight_bytes": stored, "build_s": round(built_s, 2)}
    report |= asyncio.run(measure(loaded, args))
    report["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
    if bandwidth_tbps:
        bound = Bound(stored, bandwidth_tbps * 1e12)
        report["bound_step_s"] = _sig(bound.step_s)
        for concurrency, level in report["concurrency"].items():
            level["bound_tokens_per_s"] = round(bound.tokens_per_s(int(concurrency)), 1)
            # Decode alone (prefill left out): rows ÷ step, against rows ÷ the shortest possible step.
            level["of_bound"] = _sig(bound.fraction(int(concurrency) / level["step_s"], int(concurrency)))
    del loaded, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return report


def _sig(value: float) -> float:
    """Four significant digits: short in the JSON, whatever the scale (a tiny CPU model, a 9B GPU one)."""
    return float(f"{value:.4g}")


def _dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def make_config(name: str, tokenizer):
    if name == "idefics-9b":
        return idefics_9b_config()
    from model.tiny import tiny_config

    return tiny_config(tokenizer, "tiny")


def make_tokenizer(path: Path | None, config_name: str):
    """idefics's real tokenizer (the repository's copy of LLaMA's) for 9b shapes, else a small one."""
    from model.tiny import build_tokenizer, load_real_tokenizer

    if config_name == "tiny":
        return build_tokenizer()
    path = path or (FIXTURE_TOKENIZER if FIXTURE_TOKENIZER.is_file() else None)
    return load_real_tokenizer(path) if path else build_tokenizer()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.bench --gpu-shapes", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--config", choices=("idefics-9b", "tiny"), default="idefics-9b", help="model shapes (default idefics-9b)")
    add("--precisions", default="bf16,4bit", help="comma-separated: bf16, 4bit (default both)")
    add("--concurrency", default="1,8,32", help="requests at once, comma-separated (default 1,8,32)")
    add("--new-tokens", type=int, default=64, help="tokens per request in the throughput runs (default 64)")
    add("--images", type=int, default=1, help="images per request in the throughput runs (default 1)")
    add("--pairs", type=int, default=3, help="follow-up pairs, cache on / off (default 3)")
    add("--history-tokens", type=int, default=1900, help="the follow-up's history (default 1900)")
    add("--history-images", type=int, default=5, help="images in that history (default 5)")
    add("--answer-tokens", type=int, default=16, help="the previous turn's answer (default 16)")
    add("--bandwidth-tbps", type=float, help="the device's memory bandwidth in TB/s (default: from a table)")
    add("--device", default="cuda", help="torch device (default cuda)")
    add("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"), help="compute dtype")
    add("--tokenizer", type=Path, help="a tokenizer.model / tokenizer.json (default: the repository's LLaMA one)")
    args = parser.parse_args(argv)
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    args.precisions = [p.strip() for p in args.precisions.split(",")]
    unknown = set(args.precisions) - set(QUANTIZATIONS)
    if unknown:
        parser.error(f"unknown precision {sorted(unknown)}: use bf16 and/or 4bit")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--gpu-shapes needs a CUDA GPU (or --device cpu --config tiny to try it out)")
    name = device_name(args.device)
    bandwidth = args.bandwidth_tbps or known_bandwidth_tbps(name)
    tokenizer = make_tokenizer(args.tokenizer, args.config)
    config = make_config(args.config, tokenizer)
    print(f"{args.config} shapes on {name} (memory bandwidth {bandwidth or 'unknown'} TB/s)")
    report = {
        "device_name": name,
        "bandwidth_tbps": bandwidth,
        "bandwidth_from": "--bandwidth-tbps" if args.bandwidth_tbps else ("table" if bandwidth else None),
        "config": args.config,
        "new_tokens": args.new_tokens,
    }
    for label in args.precisions:
        report[label] = run_one(config, tokenizer, label, args, bandwidth)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
