"""`python -m bot.bench`: what the bot adds to an answer, and how many updates a second it takes.

Through the real application and the Bot API stand-in (`bot.bench_harness`, `bot.bench_runs`):
with the real tiny model (a random checkpoint made by `model.tiny`, "small" by default) and with an
instant scripted model (`bot.scripted_model`), photos to private chats one at a time give the
overhead over bare generation (median, p95), update→first visible text and last token→final
message; then 100 people at once, each sending a few texts, give updates per second, checked for
lost or reordered answers (the command fails if any): `updates_per_s` with the bot in a process of
its own, as deployed (`bot.bench_process`), and also with the bot sharing the stand-in's event loop. The last line printed is JSON with
`overhead_median_s`, `overhead_p95_s` (real tiny model), `last_token_to_final_s` (median, both
models) and `updates_per_s`, plus the other figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot.bench_process import throughput_of_own_process
from bot.bench_runs import BenchFailed, LatencyRun, answer_latency, throughput
from bot.lifecycle import create_model_backend
from bot.scripted_model import ScriptedModel
from bot.settings import Settings
from model.backend import ModelBackend


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="model directory (default: make one of --size)")
    parser.add_argument("--size", choices=("tiny", "small"), default="small", help="checkpoint to make")
    parser.add_argument("--answers", type=int, default=20, help="photos answered per model, after a first one (default 20)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per answer (default 64)")
    parser.add_argument("--users", type=int, default=100, help="people writing at once (default 100)")
    parser.add_argument("--messages", type=int, default=2, help="texts each of them sends (default 2)")
    parser.add_argument("--database-url", help="run the crowd on this PostgreSQL server, in a fresh database "
                        "made on it and dropped after (default: a fresh SQLite file)")
    parser.add_argument("--crowd-only", action="store_true", help="measure only updates_per_s")
    return parser.parse_args(argv)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, float | int | str]:
    if args.crowd_only:
        return await measure_crowd(args, workdir)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from model.tiny import make_tiny_checkpoint

        checkpoint = make_tiny_checkpoint(workdir / "checkpoint", size=args.size)

    async def instant(settings: Settings) -> ModelBackend:
        return ScriptedModel(tokens=args.new_tokens)

    _progress(f"answering {args.answers} photos with the {args.size} checkpoint")
    real = await answer_latency(
        workdir, create_model_backend, answers=args.answers, new_tokens=args.new_tokens,
        model_id=str(checkpoint), model_dtype="float32",
    )
    _progress(f"answering {args.answers} photos with the instant model")
    scripted = await answer_latency(
        workdir, instant, answers=args.answers, new_tokens=args.new_tokens, user_offset=args.answers + 1
    )
    updates_per_s, shared_loop = await _crowd(args, workdir)
    last_token = real.last_token_to_final + scripted.last_token_to_final
    return {
        "overhead_median_s": _round(statistics.median(real.overhead)),
        "overhead_p95_s": _round(p95(real.overhead)),
        "last_token_to_final_s": _round(statistics.median(last_token)),
        "updates_per_s": round(updates_per_s, 1),
        "updates_per_s_sharing_the_standins_loop": round(shared_loop, 1),
        "last_token_to_final_p95_s": _round(p95(last_token)),
        "update_to_first_text_median_s": _round(statistics.median(real.first_text)),
        "bare_generation_median_s": _round(statistics.median(real.bare)),
        "outside_model_median_s": _round(statistics.median(real.outside_model)),
        "outside_model_p95_s": _round(p95(real.outside_model)),
        "instant_overhead_median_s": _round(statistics.median(scripted.overhead)),
        "instant_overhead_p95_s": _round(p95(scripted.overhead)),
        "instant_update_to_first_text_median_s": _round(statistics.median(scripted.first_text)),
        "first_answer_overhead_s": _round(real.first_answer_overhead),
        "answers": args.answers,
        "new_tokens": args.new_tokens,
        "checkpoint": args.size if args.checkpoint is None else str(args.checkpoint),
        "users": args.users,
        "updates": args.users * args.messages,
    }


async def measure_crowd(args: argparse.Namespace, workdir: Path) -> dict[str, float | int | str]:
    updates_per_s, shared_loop = await _crowd(args, workdir)
    return {"updates_per_s": round(updates_per_s, 1),
            "updates_per_s_sharing_the_standins_loop": round(shared_loop, 1),
            "users": args.users, "updates": args.users * args.messages,
            "database": "sqlite" if args.database_url is None else "postgresql"}  # fmt: skip


async def _crowd(args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """Updates per second with the bot in its own process (as deployed), then sharing the stand-in's loop."""
    crowd = dict(users=args.users, messages=args.messages, database_url=args.database_url)
    _progress(f"{args.users} people sending {args.messages} texts each, at once, to a bot in its own process")
    own_process = await throughput_of_own_process(workdir, **crowd)
    _progress("the same crowd, the bot sharing the stand-in's process and event loop")
    return own_process, await throughput(workdir, **crowd)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (the largest value for fewer than 20)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _round(seconds: float) -> float:
    return round(seconds, 4)


def report(figures: dict, runs: dict[str, LatencyRun] | None = None) -> None:
    if "overhead_median_s" not in figures:  # --crowd-only
        print(f"{figures['updates']} updates from {figures['users']} people at once ({figures['database']}): "
              f"{figures['updates_per_s']:.0f} updates/s, none lost, order kept (the bot in its own process; "
              f"{figures['updates_per_s_sharing_the_standins_loop']:.0f} updates/s sharing the stand-in's loop)")
        return
    print(f"overhead over bare generation (tiny model): median {figures['overhead_median_s']:.3f} s, "
          f"p95 {figures['overhead_p95_s']:.3f} s "
          f"(bare generation {figures['bare_generation_median_s']:.3f} s)")
    print(f"time outside the model (tiny model): median {figures['outside_model_median_s']:.3f} s, "
          f"p95 {figures['outside_model_p95_s']:.3f} s")
    print(f"the first answer after the start (tiny model): overhead {figures['first_answer_overhead_s']:.3f} s")
    print(f"overhead (instant model): median {figures['instant_overhead_median_s']:.3f} s, "
          f"p95 {figures['instant_overhead_p95_s']:.3f} s")
    print(f"update -> first visible text: {figures['update_to_first_text_median_s']:.3f} s (tiny), "
          f"{figures['instant_update_to_first_text_median_s']:.3f} s (instant)")
    print(f"last token -> final message: median {figures['last_token_to_final_s']:.4f} s, "
          f"p95 {figures['last_token_to_final_p95_s']:.4f} s")
    print(f"{figures['updates']} updates from {figures['users']} people at once: "
          f"{figures['updates_per_s']:.0f} updates/s, none lost, order kept (the bot in its own process; "
          f"{figures['updates_per_s_sharing_the_standins_loop']:.0f} updates/s sharing the stand-in's loop)")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bot-bench-") as workdir:
        try:
            figures = asyncio.run(measure(args, Path(workdir)))
        except BenchFailed as failure:
            print(f"bot.bench FAILED: {failure}", file=sys.stderr)
            raise SystemExit(1) from failure
    report(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
