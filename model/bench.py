"""`python -m model.bench`: how fast the generation service is, and how much batching buys.

Measures, through the real `ModelService` (queue, worker thread, streaming, stopping):
- one request alone: tokens/s and time to first token;
- N different requests (different images and texts) sent at once, so the service batches them,
  against the same N requests sent one after another; the ratio is the batching speed-up.
Every request generates exactly `--max-new-tokens` tokens (`GenerationParams.ignore_stop`), so both runs
do the same work. Without `--checkpoint` it writes the "small" tiny checkpoint to a temporary directory.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from model.loaded import LoadedModel, LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, TextPart, Turn

QUESTIONS = (
    "What is in this picture?",
    "Describe the colours you see.",
    "Is there a person in the image?",
    "Tell me a short story about this photo.",
    "How many shapes are there?",
    "What colour is the square?",
    "Can you describe the image in one sentence?",
    "What is the weather like here?",
)


def conversations(count: int) -> list[Conversation]:
    """`count` different one-turn conversations, each with its own image."""
    result = []
    for n in range(count):
        image = Image.new("RGB", (64, 48), ((37 * n) % 256, (91 * n + 40) % 256, (151 * n + 80) % 256))
        turn = Turn("user", (ImagePart(image, key=f"bench-{n}"), TextPart(QUESTIONS[n % len(QUESTIONS)])))
        result.append(Conversation(turns=(turn,)))
    return result


async def run_one(service: ModelService, conversation: Conversation, params: GenerationParams) -> GenerationResult:
    async for event in service.stream(conversation, params):
        if isinstance(event, GenerationResult):
            return event
    raise RuntimeError("stream ended without a result")


async def one_at_a_time(service: ModelService, convs, params) -> tuple[list[GenerationResult], float]:
    started = time.perf_counter()
    results = [await run_one(service, c, params) for c in convs]
    return results, time.perf_counter() - started


async def all_at_once(service: ModelService, convs, params) -> tuple[list[GenerationResult], float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(run_one(service, c, params) for c in convs))
    return list(results), time.perf_counter() - started


async def measure(loaded: LoadedModel, requests: int, max_new_tokens: int, batch_window_s: float) -> dict:
    params = GenerationParams(max_new_tokens=max_new_tokens, ignore_stop=True)
    convs = conversations(requests)
    service = ModelService(loaded, max_batch_size=requests, batch_window_s=batch_window_s)
    await service.start()
    try:
        warm = GenerationParams(max_new_tokens=8, ignore_stop=True)
        await run_one(service, convs[0], warm)
        await asyncio.gather(*(run_one(service, c, warm) for c in convs))

        single = await run_one(service, convs[0], params)
        print(f"single request: {single.completion_tokens} tokens in {single.total_s:.2f} s "
              f"({single.completion_tokens / single.total_s:.1f} tokens/s), "
              f"time to first token {single.time_to_first_token_s * 1000:.0f} ms")  # fmt: skip

        sequential, sequential_s = await one_at_a_time(service, convs, params)
        sequential_tokens = sum(r.completion_tokens for r in sequential)
        print(f"{requests} requests one at a time: {sequential_tokens} tokens in {sequential_s:.2f} s "
              f"({sequential_tokens / sequential_s:.1f} tokens/s)")  # fmt: skip

        batched, batched_s = await all_at_once(service, convs, params)
        batched_tokens = sum(r.completion_tokens for r in batched)
        stats = service.stats
        print(f"{requests} requests at once: {batched_tokens} tokens in {batched_s:.2f} s "
              f"({batched_tokens / batched_s:.1f} tokens/s), largest batch {stats.largest_batch}")  # fmt: skip
    finally:
        await service.stop()
    batched_rate, sequential_rate = batched_tokens / batched_s, sequential_tokens / sequential_s
    print(f"batching speed-up: {batched_rate / sequential_rate:.2f}x")
    return {
        "tokens_per_s": round(single.completion_tokens / single.total_s, 2),
        "ttft_s": round(single.time_to_first_token_s, 4),
        "batched_tokens_per_s": round(batched_rate, 2),
        "sequential_tokens_per_s": round(sequential_rate, 2),
        "speedup": round(batched_rate / sequential_rate, 2),
        "requests": requests,
        "max_new_tokens": max_new_tokens,
        "tokens_generated": {"single": single.completion_tokens, "sequential": sequential_tokens,
                             "batched": batched_tokens},  # fmt: skip
        "largest_batch": stats.largest_batch,
        "batch_window_s": batch_window_s,
    }


def describe(loaded: LoadedModel) -> dict:
    return {
        "device": str(loaded.device),
        "torch_threads": torch.get_num_threads(),
        "checkpoint": loaded.model_id,
        "checkpoint_params": sum(p.numel() for p in loaded.model.parameters()),
        "dtype": str(loaded.dtype).replace("torch.", ""),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="model directory or hub id (default: make 'small')")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per request (default 128)")
    parser.add_argument(
        "--batch-window", type=float, default=0.01,
        help="seconds an idle worker waits for a batch to fill (default 0.01, as the service)",
    )  # fmt: skip
    parser.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="idefics-bench-") as scratch:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from model.tiny import make_tiny_checkpoint

            print("making the 'small' tiny checkpoint ...")
            checkpoint = make_tiny_checkpoint(Path(scratch) / "small", size="small")
        loaded = load_model(LoadOptions(model_id=str(checkpoint), dtype=args.dtype))
        info = describe(loaded)
        print(f"model: {info['checkpoint_params'] / 1e6:.1f} M parameters on {info['device']} "
              f"({info['dtype']}, {info['torch_threads']} torch threads)")  # fmt: skip
        figures = asyncio.run(measure(loaded, args.requests, args.max_new_tokens, args.batch_window))
    print(json.dumps({**figures, **info}))


if __name__ == "__main__":
    main()
