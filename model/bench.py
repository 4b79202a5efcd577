"""`python -m model.bench`: what the generation service's engine buys, measured honestly on this machine.

Each scenario compares two runs (A and B) interleaved — A B A B … — and every figure is the spread
(min / median / max) of per-pair ratios, all from the same rounds (model/bench_stats.py), because other
work shares the CPU and a best-of-N of A against a best-of-N of B compares two different moments:
- `followup_ttft_ratio`: a follow-up's time to first token after a ~1900-token history with 5 images,
  prefix cache on ÷ off (the previous turn really ran first on the same service);
- `preamble_ttft_ratio`: a first message's time to first token with the default mode's preamble,
  cached ÷ not;
- `image_step_ratio`: one decode step of 8 rows with 4 images each, the service's ÷ padded `generate`'s
  on the same prompts (what a user of the IDEFICS guide would write);
- `speedup_median`: tokens/s of 8 requests at once ÷ one at a time (with padded `generate` beside);
- `newcomer_gap_ratio`: the worst gap between two tokens of a streaming row while a ~1900-token newcomer
  joins ÷ that row's median gap (prefill in chunks; without chunks too, for comparison).
Without `--checkpoint` it writes the tiny checkpoints it needs to a temporary directory: "small" for the
text scenarios and "proportional" (idefics-9b's image proportions, model/tiny.py) for the image ones.
The last line printed is one JSON object: the five figures above at its top level, then the rest.
`python -m model.bench --gpu-shapes` runs the GPU benchmark instead (model/bench_gpu.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from model.bench_scenarios import Pairs, followup, image_step, newcomer, preamble, speedup
from model.bench_stats import spread
from model.bench_workload import exactly, first_message
from model.loaded import LoadedModel, LoadOptions
from model.loading import load_model
from model.preamble import load_modes
from model.service import ModelService

# Headline key -> (scenario, how the goal compares, the goal), as issue 12 sets them.
GOALS = {
    "followup_ttft_ratio": ("followup", "<=", 0.2),
    "preamble_ttft_ratio": ("preamble", "<=", 0.35),
    "image_step_ratio": ("image_step", "<=", 0.7),
    "speedup_median": ("speedup", ">=", 4.5),
    "newcomer_gap_ratio": ("newcomer", "<=", 3.0),
}


async def measure(text: LoadedModel, images: LoadedModel, args: argparse.Namespace) -> dict[str, Pairs]:
    """Start the services each scenario compares, warm them up, and run the scenarios in turn."""
    common = dict(
        max_batch_size=max(args.requests, args.image_rows),
        max_images=max(4, args.history_images, args.images_per_row),
        batch_window_s=args.batch_window,
    )
    if args.prefill_chunk_tokens is not None:
        common["prefill_chunk_tokens"] = args.prefill_chunk_tokens
    services = {
        "text": ModelService(text, **common),
        "text_uncached": ModelService(text, **common, prefix_cache_bytes=0),
        "text_unchunked": ModelService(text, **(common | {"prefill_chunk_tokens": 0})),
        "images": ModelService(images, **common),
        "images_uncached": ModelService(images, **common, prefix_cache_bytes=0),
    }
    for service in services.values():
        await service.start()
    try:
        for service in services.values():
            await _warm_up(service)
        return await _scenarios(services, args)
    finally:
        for service in services.values():
            await service.stop()


async def _warm_up(service: ModelService) -> None:
    """One short request, so first-call costs (allocations, lazy imports) land in no measurement."""
    async for _ in service.stream(first_message(seed=9), exactly(3)):
        pass


async def _scenarios(services: dict[str, ModelService], args: argparse.Namespace) -> dict[str, Pairs]:
    pairs = args.pairs
    results: dict[str, Pairs] = {}
    print(f"follow-up after ~{args.history_tokens} tokens with {args.history_images} images ({pairs} pairs) ...")
    results["followup"] = await followup(
        services["images"], services["images_uncached"], pairs,
        args.history_tokens, args.history_images, answer_tokens=args.answer_tokens,
    )  # fmt: skip
    _report("follow-up TTFT, cache on / off", results["followup"], "cached_ttft_s", "uncached_ttft_s")
    print(f"first message with the '{args.preamble}' preamble ({pairs} pairs) ...")
    mode = load_modes()[args.preamble]
    results["preamble"] = await preamble(services["text"], services["text_uncached"], mode, pairs)
    _report("first-message TTFT, preamble cached / not", results["preamble"], "cached_ttft_s", "uncached_ttft_s")
    print(f"decode step, {args.image_rows} rows x {args.images_per_row} images ({pairs} pairs) ...")
    results["image_step"] = await image_step(
        services["images"], pairs, args.image_rows, args.images_per_row, args.step_tokens
    )
    _report("decode step, service / padded generate", results["image_step"], "service_step_s", "generate_step_s")
    print(f"{args.requests} requests at once / one at a time ({pairs} pairs) ...")
    results["speedup"] = await speedup(
        services["text"], pairs, args.requests, args.sequential, args.max_new_tokens
    )
    _report("aggregate tokens/s, batched / one at a time", results["speedup"],
            "batched_tokens_per_s", "sequential_tokens_per_s")  # fmt: skip
    print(f"a ~{args.history_tokens}-token newcomer joins {args.requests - 1} streaming rows ({pairs} pairs) ...")
    results["newcomer"] = await newcomer(
        services["text"], services["text_unchunked"], pairs,
        max(1, args.requests - 1), args.history_tokens, args.history_images,
    )  # fmt: skip
    _report("worst gap / median gap while a newcomer joins (chunked)", results["newcomer"],
            "chunked_newcomer_ttft_s", "unchunked_newcomer_ttft_s")  # fmt: skip
    results["engine"] = _engine_counters(services)
    _report_phases(services)
    return results


def _report_phases(services: dict[str, ModelService]) -> None:
    """Where each worker's time went between and in steps: the longest single time is a running row's stall."""
    print("worker phases (longest single / total seconds):")
    for name, service in services.items():
        stats = service.stats
        phases = ", ".join(
            f"{phase} {stats.phase_max_s[phase]:.3f}/{total:.2f}" for phase, total in sorted(stats.phase_total_s.items())
        )
        print(f"  {name}: {phases}")


def _report(title: str, pairs: Pairs, a: str, b: str) -> None:
    ratio = spread(pairs.ratios)
    first, second = spread(pairs.figures[a]), spread(pairs.figures[b])
    print(f"  {title}: median {ratio.median:.3f} (min {ratio.min:.3f}, max {ratio.max:.3f}); "
          f"{a} median {first.median:.4g}, {b} median {second.median:.4g}")  # fmt: skip


def _engine_counters(services: dict[str, ModelService]) -> Pairs:
    """The prefix cache's own counters, to show the reuse the time ratios come from."""
    counters = Pairs()
    for name, service in services.items():
        stats = service.stats
        counters.add(**{
            f"{name}_prompt_tokens_reused": getattr(stats, "prompt_tokens_reused", 0),
            f"{name}_prompt_tokens_computed": getattr(stats, "prompt_tokens_computed", 0),
        } | {f"{name}_longest_{phase}_s": round(seconds, 4) for phase, seconds in stats.phase_max_s.items()})  # fmt: skip
    return counters


def figures(results: dict[str, Pairs]) -> dict:
    """The last line's JSON: headline medians (with `_min`/`_max`) first, goals, then every spread."""
    out: dict = {}
    for key, (scenario, _, _) in GOALS.items():
        ratio = spread(results[scenario].ratios)
        stem = key.removesuffix("_median")
        out[key] = round(ratio.median, 4)
        out[f"{stem}_min"] = round(ratio.min, 4)
        out[f"{stem}_max"] = round(ratio.max, 4)
    out["goals"] = {
        key: {"goal": f"{op} {goal}", "met": out[key] <= goal if op == "<=" else out[key] >= goal}
        for key, (_, op, goal) in GOALS.items()
    }
    speed = results["speedup"].figures
    for name in ("batched_tokens_per_s", "sequential_tokens_per_s", "generate_tokens_per_s"):
        out[name] = round(spread(speed[name]).median, 2)
    out["service_vs_generate"] = round(spread(speed["service_vs_generate"]).median, 3)
    out["newcomer_gap_ratio_unchunked"] = round(spread(results["newcomer"].figures["unchunked_gap_ratio"]).median, 3)
    out["scenarios"] = {
        scenario: {"ratio": spread(pairs.ratios).as_dict()} | {
            name: spread(values).as_dict() for name, values in pairs.figures.items()
        }
        for scenario, pairs in results.items() if scenario != "engine"
    }  # fmt: skip
    out["engine_counters"] = {name: values[-1] for name, values in results["engine"].figures.items()}
    return out


def describe(loaded: LoadedModel) -> dict:
    return {
        "checkpoint": loaded.model_id,
        "checkpoint_params": sum(p.numel() for p in loaded.model.parameters()),
        "dtype": str(loaded.dtype).replace("torch.", ""),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--gpu-shapes", action="store_true", help="run the GPU benchmark instead (--gpu-shapes --help: its options)")
    add("--checkpoint", type=Path, help="checkpoint for the text scenarios (default: make 'small')")
    add("--image-checkpoint", type=Path, help="checkpoint for the image scenarios (default: make 'proportional')")
    add("--pairs", type=int, default=5, help="interleaved pairs per scenario (default 5)")
    add("--requests", type=int, default=8, help="concurrent requests (default 8)")
    add("--sequential", type=int, default=2, help="requests in the one-at-a-time run (default 2)")
    add("--max-new-tokens", type=int, default=64, help="tokens per request, speed-up runs (default 64)")
    add("--history-tokens", type=int, default=1900, help="follow-up and newcomer prompt length (default 1900)")
    add("--history-images", type=int, default=5, help="images in that history (default 5)")
    add("--answer-tokens", type=int, default=16, help="the previous turn's answer before a follow-up (default 16)")
    add("--image-rows", type=int, default=8, help="rows of the image decode step (default 8)")
    add("--images-per-row", type=int, default=4, help="images in each of those rows (default 4)")
    add("--step-tokens", type=int, default=16, help="tokens per row when timing decode steps (default 16)")
    add("--preamble", default="default", help="the mode whose preamble is cached (default: default)")
    add("--batch-window", type=float, default=0.01, help="seconds an idle worker waits for a batch (0.01)")
    add("--prefill-chunk-tokens", type=int, help="the services' PREFILL_CHUNK_TOKENS (default: the service's)")
    add("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    add("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def _checkpoint(given: Path | None, size: str, scratch: str) -> Path:
    if given is not None:
        return given
    from model.tiny import make_tiny_checkpoint

    print(f"making the '{size}' tiny checkpoint ...")
    # It favours one word, so every step streams exactly one piece of text: gaps are timed token by token.
    return make_tiny_checkpoint(Path(scratch) / size, size=size, chatty_word=" the")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--gpu-shapes" in argv:
        from model.bench_gpu import main as gpu_main

        argv.remove("--gpu-shapes")
        gpu_main(argv)
        return
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="idefics-bench-") as scratch:
        text_path = _checkpoint(args.checkpoint, "small", scratch)
        image_path = _checkpoint(args.image_checkpoint, "proportional", scratch)
        text = load_model(LoadOptions(model_id=str(text_path), dtype=args.dtype))
        images = text if image_path == text_path else load_model(LoadOptions(model_id=str(image_path), dtype=args.dtype))
        info = {"text_model": describe(text), "image_model": describe(images)}
        info |= {"device": str(text.device), "torch_threads": torch.get_num_threads(), "pairs": args.pairs}
        print(f"models: text {info['text_model']['checkpoint_params'] / 1e6:.1f} M, images "
              f"{info['image_model']['checkpoint_params'] / 1e6:.1f} M parameters on {info['device']} "
              f"({info['torch_threads']} torch threads)")  # fmt: skip
        results = asyncio.run(measure(text, images, args))
    print(json.dumps(figures(results) | info))


if __name__ == "__main__":
    main()
