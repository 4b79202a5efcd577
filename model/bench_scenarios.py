"""The benchmark's scenarios, each a comparison of two (or three) runs interleaved pair by pair.

- follow-up: a long conversation with images gets its next question; prefix cache on ÷ off;
- preamble: a chat's first message with the default mode's preamble; preamble cached ÷ not;
- image step: 8 rows with 4 images each; the service's decode step ÷ padded `generate`'s;
- speed-up: 8 requests at once ÷ one at a time (and ÷ one padded `generate` call);
- newcomer: a long prompt joins rows that are streaming; their worst gap ÷ their median gap, with the
  prefill in chunks and without.
Each scenario returns the per-pair figures it measured; `model/bench.py` summarises and prints them.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

from model.bench_generate import padded_generate
from model.bench_stats import pair_ratios, worst_gap_ratio
from model.bench_workload import (
    built,
    exactly,
    first_message,
    images_only,
    long_history,
    timed,
    with_answer,
)
from model.prompt import PromptBuilder
from model.service import ModelService
from model.types import GenerationParams, Preamble, TextDelta

# The first token is all a time-to-first-token run needs; a few more show it streams.
TTFT_TOKENS = 4


@dataclass
class Pairs:
    """Per-pair measurements of one scenario, named; `ratios` are what its headline figure is made of."""

    ratios: list[float] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **values: float) -> None:
        for name, value in values.items():
            self.figures.setdefault(name, []).append(value)


async def followup(
    cached: ModelService, uncached: ModelService, pairs: int, history_tokens: int, images: int, answer_tokens: int
) -> Pairs:
    """TTFT of the same follow-up after a long history, on a service that answered the previous turn
    (prefix cache on) and on one that has seen only the images (cache off; its vision features are
    cached, so only the prefix cache differs)."""
    builder = PromptBuilder(cached.loaded, max(4, images))
    result = Pairs()
    for pair in range(pairs):
        previous = long_history(builder, seed=1000 + pair, tokens=history_tokens, images=images)
        answered = await timed(cached, previous, GenerationParams(max_new_tokens=answer_tokens))
        follow_up = with_answer(previous, answered.result.text)
        with_cache = await timed(cached, follow_up, exactly(TTFT_TOKENS))
        await timed(uncached, images_only(previous), exactly(1))
        without = await timed(uncached, follow_up, exactly(TTFT_TOKENS))
        result.ratios += pair_ratios([with_cache.ttft_s], [without.ttft_s])
        result.add(
            cached_ttft_s=with_cache.ttft_s,
            uncached_ttft_s=without.ttft_s,
            prompt_tokens=with_cache.result.prompt_tokens,
        )
    return result


async def preamble(cached: ModelService, uncached: ModelService, mode: Preamble, pairs: int) -> Pairs:
    """TTFT of a chat's first message with `mode`'s preamble, once another chat has used that mode."""
    for service in (cached, uncached):  # both have seen the preamble's images; only one kept its KV
        await timed(service, first_message(seed=1, preamble=mode), exactly(TTFT_TOKENS))
    result = Pairs()
    for pair in range(pairs):
        conversation = first_message(seed=2000 + pair, preamble=mode)
        runs = [await timed(service, conversation, exactly(TTFT_TOKENS)) for service in (cached, uncached)]
        result.ratios += pair_ratios([runs[0].ttft_s], [runs[1].ttft_s])
        result.add(
            cached_ttft_s=runs[0].ttft_s, uncached_ttft_s=runs[1].ttft_s, prompt_tokens=runs[0].result.prompt_tokens
        )
    return result


async def image_step(service: ModelService, pairs: int, rows: int, images: int, new_tokens: int) -> Pairs:
    """A decode step of `rows` rows with `images` each: the service's ÷ padded `generate`'s, same prompts."""
    builder = PromptBuilder(service.loaded, max(4, images))
    result = Pairs()
    for pair in range(pairs):
        conversations = [first_message(3000 + pair * rows + row, images=images) for row in range(rows)]
        started = time.perf_counter()
        runs = await asyncio.gather(*(timed(service, c, exactly(new_tokens)) for c in conversations))
        service_s = time.perf_counter() - started
        step_s = statistics.median(run.step_s for run in runs)
        prompts = built(builder, conversations, new_tokens)
        baseline = await asyncio.to_thread(padded_generate, service.loaded, prompts, new_tokens)
        result.ratios += pair_ratios([step_s], [baseline.step_s])
        result.add(
            service_step_s=step_s,
            generate_step_s=baseline.step_s,
            service_tokens_per_s=sum(run.tokens for run in runs) / service_s,
            generate_tokens_per_s=baseline.tokens_per_s,
        )
    return result


async def speedup(service: ModelService, pairs: int, requests: int, sequential: int, new_tokens: int) -> Pairs:
    """Tokens/s of `requests` sent at once ÷ of `sequential` of them one after another, pair by pair.

    The one-at-a-time run sends fewer requests so that both runs last about as long (the rate of one
    request alone does not depend on how many follow it); the padded `generate` call of the same
    `requests` prompts runs in the same round.
    """
    builder = PromptBuilder(service.loaded, 4)
    result = Pairs()
    for pair in range(pairs):
        conversations = [first_message(4000 + pair * requests + n) for n in range(requests)]
        started = time.perf_counter()
        together = await asyncio.gather(*(timed(service, c, exactly(new_tokens)) for c in conversations))
        batched = sum(run.tokens for run in together) / (time.perf_counter() - started)
        started = time.perf_counter()
        alone = [await timed(service, c, exactly(new_tokens)) for c in conversations[:sequential]]
        one_at_a_time = sum(run.tokens for run in alone) / (time.perf_counter() - started)
        prompts = built(builder, conversations, new_tokens)
        baseline = await asyncio.to_thread(padded_generate, service.loaded, prompts, new_tokens)
        result.ratios += pair_ratios([batched], [one_at_a_time])
        result.add(
            batched_tokens_per_s=batched,
            sequential_tokens_per_s=one_at_a_time,
            generate_tokens_per_s=baseline.tokens_per_s,
            service_vs_generate=batched / baseline.tokens_per_s,
            single_ttft_s=alone[0].ttft_s,
        )
    return result


async def newcomer(
    chunked: ModelService, whole: ModelService, pairs: int, running: int, history_tokens: int, images: int
) -> Pairs:
    """The worst gap of a streaming row while a long prompt joins ÷ its median gap; chunked, then whole."""
    builder = PromptBuilder(chunked.loaded, max(4, images))
    result = Pairs()
    for pair in range(pairs):
        ratios, ttfts = [], []
        for number, service in enumerate((chunked, whole)):
            seed = 5000 + 2 * pair + number
            joining = long_history(builder, seed=seed, tokens=history_tokens, images=images)
            ratio, ttft = await _one_newcomer(service, seed, running, joining)
            ratios.append(ratio)
            ttfts.append(ttft)
        result.ratios.append(ratios[0])
        result.add(unchunked_gap_ratio=ratios[1], chunked_newcomer_ttft_s=ttfts[0], unchunked_newcomer_ttft_s=ttfts[1])
    return result


# Tokens each running row streams before the newcomer comes, and after its first token, before stopping.
_BEFORE, _AFTER = 6, 6


async def _one_newcomer(service: ModelService, seed: int, running: int, joining) -> tuple[float, float]:
    arrivals: list[list[float]] = [[] for _ in range(running)]
    streaming = asyncio.Event()
    joined_at: list[float] = []  # set once the newcomer's first token is in

    async def running_row(index: int) -> None:
        conversation = first_message(seed * 16 + index)
        stream = service.stream(conversation, exactly(service.max_positions // 2))
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if not isinstance(event, TextDelta):
                    continue
                now = time.perf_counter()
                arrivals[index].append(now)
                if all(len(times) >= _BEFORE for times in arrivals):
                    streaming.set()
                if joined_at and sum(t > joined_at[0] for t in arrivals[index]) >= _AFTER:
                    return  # closing the stream cancels the request

    rows = [asyncio.create_task(running_row(index)) for index in range(running)]
    try:
        await streaming.wait()
        started = time.perf_counter()
        run = await timed(service, joining, exactly(2))
        joined_at.append(started + run.ttft_s)
        await asyncio.gather(*rows)
    finally:
        for row in rows:
            row.cancel()
    window = (started, joined_at[0])
    return max(worst_gap_ratio(times, window) for times in arrivals), run.ttft_s
