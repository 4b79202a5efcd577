"""The baseline the benchmark compares the service with: one padded `model.generate` call, timed per step.

This is what a user of the IDEFICS guide would write to answer several people at once: pad their prompts
together (left padding) and call `generate` once. The tensors are the ones the processor would make
(`model/batch.py` builds the same masks from the service's own prompts, so both sides see the same
batch). A streamer records when each step's tokens come out, which gives the decode step's length without
the prefill; `generate` recomputes the perceiver and every cross-attention layer's image keys/values at
every one of those steps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.generation.streamers import BaseStreamer

from model.batch import collate, image_dims, prepare_prompt
from model.bench_stats import gaps
from model.generation import pad_token_id, stop_token_ids
from model.loaded import LoadedModel
from model.types import BuiltPrompt


class StepClock(BaseStreamer):
    """Notes the time of every `put`: first the prompt, then one per generated step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


@dataclass(frozen=True)
class GenerateRun:
    """One padded `generate` call: rows, tokens per row, wall-clock seconds, and its median step."""

    rows: int
    new_tokens: int
    seconds: float
    step_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.rows * self.new_tokens / self.seconds


def padded_generate(loaded: LoadedModel, prompts: Sequence[BuiltPrompt], new_tokens: int) -> GenerateRun:
    """Generate exactly `new_tokens` greedy tokens for every prompt, padded into one batch."""
    if new_tokens < 3:
        raise ValueError("need at least 3 new tokens to time a decode step apart from the prefill")
    started = time.perf_counter()
    prepared = [prepare_prompt(loaded, p.input_ids, p.images) for p in prompts]
    batch = collate(
        prepared,
        pad_token_id=pad_token_id(loaded),
        image_token_id=loaded.image_token_ids[0],
        image_dims=image_dims(loaded),
        padding_side="left",
    )
    clock = StepClock()
    with torch.inference_mode():
        loaded.model.generate(
            **batch.model_inputs(loaded.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            bad_words_ids=[[token] for token in loaded.image_token_ids],
            eos_token_id=list(stop_token_ids(loaded)),
            pad_token_id=pad_token_id(loaded),
            streamer=clock,
        )
    seconds = time.perf_counter() - started
    # times[0] is the prompt (before the prefill), times[1] the first token: steps are the gaps after it.
    return GenerateRun(len(prompts), new_tokens, seconds, statistics.median(gaps(clock.times[1:])))
