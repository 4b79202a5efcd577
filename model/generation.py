"""One request's row in the decode loop: where its tokens become text, and when it is done.

`BatchRow.advance` takes the row's newest token right after it is chosen (model/decoding.py): it
decodes the safe text and decides whether the row has finished — by end-of-utterance, a stop string,
its own `max_new_tokens`, or its consumer having gone away — and returns what happened as a
`StepEvent` (the token, the text it released, the finish reason), as TGI's `generate_token` returns
its generations. The worker delivers the events (`deliver`) to the requests; nothing leaves a row
through callbacks, and the worker drops finished rows from the batch before the next step.
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


@dataclass(frozen=True)
class StepEvent:
    """What one step (or an ending from outside) did for one request."""

    sink: RowSink
    stopper: RowStopper
    token_id: int | None  # None when no token was taken (cancelled, or ended from outside)
    text: str  # newly released text, safe to show
    finish_reason: FinishReason | None  # set on the row's last event


def deliver(event: StepEvent) -> None:
    """Hand one event to its request (on the worker thread)."""
    if event.token_id is not None:
        event.sink.on_token()
    if event.text:
        event.sink.on_delta(event.text)
    if event.finish_reason is not None:
        event.sink.on_finished(event.stopper)


@dataclass
class BatchRow:
    stopper: RowStopper
    sink: RowSink

    def advance(self, token_id: int) -> StepEvent | None:
        """Take the row's newest token; None once the row has finished."""
        if self.stopper.finished:
            return None
        if self.sink.cancelled:
            self.stopper.finish(FinishReason.CANCELLED)
            return self._event(None, "")
        return self._event(token_id, self.stopper.push(token_id))

    def finish(self, reason: FinishReason) -> StepEvent | None:
        """End a row from outside (cancelled, or the service stopping); None if it had finished."""
        if self.stopper.finished:
            return None
        return self._event(None, self.stopper.finish(reason))

    def _event(self, token_id: int | None, text: str) -> StepEvent:
        return StepEvent(self.sink, self.stopper, token_id, text, self.stopper.finish_reason)


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
