"""The two kinds of work the model worker takes from its queue, and how their answers cross threads.

Both are created on the event loop and answered from the worker thread, always through
`loop.call_soon_threadsafe`, so asyncio objects are only ever touched on their own loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.batch import PreparedPrompt
from model.errors import ServiceStopped
from model.stopping import RowStopper
from model.types import FinishReason, GenerationParams, GenerationResult, TextDelta


def _send(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the caller's loop is gone; nobody is left to tell
        pass


@dataclass(eq=False)
class GenerationRequest:
    """One `stream()` call: its prompt and settings, and the queue its events go to."""

    prompt: Any  # model.prompt.BuiltPrompt
    params: GenerationParams
    loop: asyncio.AbstractEventLoop
    submitted_at: float
    on_done: Callable[[GenerationResult], None]
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    prepared: PreparedPrompt | None = None
    cancelled: bool = False
    done: bool = False
    shown_text: str = ""
    first_token_at: float | None = None
    enqueued_at: float = 0.0  # time.monotonic() when the service queued it
    solo: bool = False  # being retried after a failure: runs with no other request beside it

    def cancel(self) -> None:
        self.cancelled = True

    def reset_for_run(self) -> None:
        """A (re)start from the prompt: earlier attempts never showed text, so only timing resets."""
        self.first_token_at = None

    # --- RowSink, called on the worker thread ---

    def on_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def on_delta(self, text: str) -> None:
        self.shown_text += text
        _send(self.loop, self.events.put_nowait, TextDelta(text))

    def on_finished(self, stopper: RowStopper) -> None:
        self._finish(stopper.reply, stopper.finish_reason or FinishReason.LENGTH, stopper.completion_tokens)

    def finish_without_running(self, reason: FinishReason) -> None:
        self._finish(self.shown_text, reason, 0)

    def abandon(self) -> None:
        """The service stopped before this request ran."""
        self.finish_without_running(FinishReason.CANCELLED)

    def fail(self, error: Exception) -> None:
        if self.done:
            return
        self.done = True
        self.on_done(self._result(self.shown_text, FinishReason.ERROR, 0))
        _send(self.loop, self.events.put_nowait, error)

    def _finish(self, text: str, reason: FinishReason, completion_tokens: int) -> None:
        if self.done:
            return
        self.done = True
        result = self._result(text, reason, completion_tokens)
        self.on_done(result)
        _send(self.loop, self.events.put_nowait, result)

    def _result(self, text: str, reason: FinishReason, completion_tokens: int) -> GenerationResult:
        now = time.perf_counter()
        ttft = None if self.first_token_at is None else self.first_token_at - self.submitted_at
        return GenerationResult(
            text=text,
            finish_reason=reason,
            prompt_tokens=len(self.prompt.input_ids),
            completion_tokens=completion_tokens,
            time_to_first_token_s=ttft,
            total_s=now - self.submitted_at,
            dropped_turns=self.prompt.dropped_turns,
            extra={"dropped_images": getattr(self.prompt, "dropped_images", 0)},
        )


@dataclass(eq=False)
class ScoringJob:
    """One `score_options()` call: the prompt, each option's continuation ids, and the future to answer."""

    prompt: Any  # model.prompt.BuiltPrompt
    options: tuple[str, ...]
    continuations: Sequence[Sequence[int]]
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = 0.0
    future: asyncio.Future = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    @property
    def cancelled(self) -> bool:
        return self.future.done()

    def succeed(self, value: Any) -> None:
        _send(self.loop, self._settle, value, None)

    def fail(self, error: Exception) -> None:
        _send(self.loop, self._settle, None, error)

    def abandon(self) -> None:
        self.fail(ServiceStopped("The model service stopped before these options could be scored."))

    def _settle(self, value: Any, error: Exception | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)
