"""One request's row in the decode loop: where its tokens become text, and when it is done.

`BatchRow.step` takes the row's newest token right after it is chosen (model/decoding.py), so in the
same step it decodes and streams the safe text, and decides whether the row has finished — by
end-of-utterance, a stop string, its own `max_new_tokens`, or its consumer having gone away. A row that
finishes is answered there and then, and the worker drops it from the batch before the next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
        """End a row from outside (cancelled, or the service stopping), answering its request."""
        if self.stopper.finished:
            return
        text = self.stopper.finish(reason)
        if text:
            self.sink.on_delta(text)
        self.sink.on_finished(self.stopper)


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
