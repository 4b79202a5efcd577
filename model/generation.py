"""One `generate` call for a batch of requests, with each row streaming and stopping on its own.

The per-step hook is a `StoppingCriteria`: transformers (5.x) calls it with the freshly extended
`input_ids` right after choosing each step's tokens, before it hands them to any streamer, and takes back
one bool per row. So one hook both routes each row's newest token to its request (decode, hold back,
stream) and answers in the same step whether that row is done — by end-of-utterance, a stop string,
its own `max_new_tokens`, or its consumer having gone away. A row that finishes is answered there and
then; `generate` pads it from then on and stops when no row is left. A streamer would see the tokens one
call later and make every stop decision lag a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from model.batch import CollatedBatch
from model.loaded import LoadedModel
from model.stopping import DEFAULT_STOP_STRINGS, RowStopper
from model.types import FinishReason, GenerationParams


class RowSink(Protocol):
    """Where one row's output goes; called on the worker thread."""

    @property
    def cancelled(self) -> bool: ...

    def on_token(self) -> None: ...

    def on_delta(self, text: str) -> None: ...

    def on_finished(self, stopper: RowStopper) -> None: ...


@dataclass
class BatchRow:
    stopper: RowStopper
    sink: RowSink

    def step(self, token_id: int) -> None:
        if self.stopper.finished:
            return
        if self.sink.cancelled:
            self.stopper.finish(FinishReason.CANCELLED)
        else:
            self.sink.on_token()
            text = self.stopper.push(token_id)
            if text:
                self.sink.on_delta(text)
        if self.stopper.finished:
            self.sink.on_finished(self.stopper)

    def finish(self, reason: FinishReason) -> None:
        """End a row `generate` left unfinished (it ran out of steps), answering its request."""
        if self.stopper.finished:
            return
        text = self.stopper.finish(reason)
        if text:
            self.sink.on_delta(text)
        self.sink.on_finished(self.stopper)


class RowRouter(StoppingCriteria):
    """Feeds each row its newest token and reports, per row, whether it has finished."""

    def __init__(self, rows: Sequence[BatchRow]) -> None:
        self.rows = list(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()
        for row, token_id in zip(self.rows, newest):
            row.step(token_id)
        finished = [row.stopper.finished for row in self.rows]
        return torch.tensor(finished, dtype=torch.bool, device=input_ids.device)


def stop_token_ids(loaded: LoadedModel) -> tuple[int, ...]:
    return (loaded.end_of_utterance_id, loaded.eos_token_id)


def pad_token_id(loaded: LoadedModel) -> int:
    pad = loaded.processor.tokenizer.pad_token_id
    return loaded.eos_token_id if pad is None else pad


def make_row(loaded: LoadedModel, params: GenerationParams, sink: RowSink, *, ignore_stop: bool) -> BatchRow:
    stopper = RowStopper(
        loaded.processor.tokenizer,
        stop_token_ids=() if ignore_stop else stop_token_ids(loaded),
        max_new_tokens=params.max_new_tokens,
        stop_strings=() if ignore_stop else DEFAULT_STOP_STRINGS,
    )
    return BatchRow(stopper=stopper, sink=sink)


def generate_kwargs(
    loaded: LoadedModel, params: GenerationParams, max_new_tokens: int, *, ignore_stop: bool
) -> dict:
    """`generate` arguments shared by every row of a batch (rows in one batch share their sampling)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": params.do_sample,
        "repetition_penalty": params.repetition_penalty,
        "bad_words_ids": [[token_id] for token_id in loaded.image_token_ids],
        "eos_token_id": list(stop_token_ids(loaded)),
        "pad_token_id": pad_token_id(loaded),
        "use_cache": True,
    }
    if params.do_sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if ignore_stop:
        # Benchmarks want every row to run its full length: forbid the stop tokens instead of stopping.
        kwargs["min_new_tokens"] = max_new_tokens
    return kwargs


def run_batch(
    loaded: LoadedModel,
    batch: CollatedBatch,
    rows: Sequence[BatchRow],
    params: GenerationParams,
    *,
    ignore_stop: bool = False,
    image_features: torch.Tensor | None = None,
) -> None:
    """Generate for all rows; every row's sink gets its deltas and exactly one `on_finished`.

    `image_features` (vision-encoder outputs, see model/image_features.py) replace the batch's pixels.
    """
    max_new_tokens = max(row.stopper.max_new_tokens for row in rows)
    kwargs = generate_kwargs(loaded, params, max_new_tokens, ignore_stop=ignore_stop)
    if params.do_sample and params.seed is not None:
        torch.manual_seed(params.seed)
    inputs = batch.model_inputs(loaded.device)
    if image_features is not None:
        del inputs["pixel_values"]
        inputs["image_encoder_embeddings"] = image_features
    with torch.inference_mode():
        loaded.model.generate(
            **inputs,
            stopping_criteria=StoppingCriteriaList([RowRouter(rows)]),
            **kwargs,
        )
    for row in rows:
        row.finish(FinishReason.LENGTH)
