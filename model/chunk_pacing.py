"""How many prompt tokens the worker may read between two ticks while rows are streaming.

A chunk may take PREFILL_CHUNK_TOKENS tokens, and no more than fit in about CHUNK_TICKS ticks' time (a
tick: one decode step of every running group), both rates measured as the worker runs. The time bound
is what keeps a long newcomer from stalling the streaming rows where a prompt token costs a good share
of a decode step (a CPU), and it follows the steps: faster steps make smaller chunks. On a GPU, where a
chunk of hundreds of tokens costs about a step, the token cap binds.
"""

from __future__ import annotations

CHUNK_TICKS = 1.5
MIN_CHUNK_TOKENS = 16  # smaller chunks would cost their forward pass's fixed time for next to nothing
_SMOOTHING = 0.2


class ChunkPacing:
    """The measured tick and per-token prefill times, and the chunk size they allow."""

    def __init__(self, chunk_tokens: int) -> None:
        self.chunk_tokens = chunk_tokens  # PREFILL_CHUNK_TOKENS; 0: prompts are read at once
        self.tick_s: float | None = None  # smoothed time of one tick
        self.token_s: float | None = None  # smoothed prefill time per prompt token

    def ticked(self, seconds: float) -> None:
        self.tick_s = _smoothed(self.tick_s, seconds)

    def read(self, tokens: int, seconds: float) -> None:
        if tokens >= MIN_CHUNK_TOKENS:  # a few tokens' time is mostly the pass's fixed cost
            self.token_s = _smoothed(self.token_s, seconds / tokens)

    def took_a_slot(self, seconds: float) -> bool:
        """Whether work between two ticks (setting newcomers up) already took a chunk's time."""
        return self.tick_s is not None and seconds > CHUNK_TICKS * self.tick_s

    def budget(self) -> int:
        """PREFILL_CHUNK_TOKENS, or fewer where that many would take longer than CHUNK_TICKS ticks."""
        if self.tick_s is None:
            return self.chunk_tokens
        if not self.token_s:  # not measured yet: a small first chunk, to measure
            return min(self.chunk_tokens, 2 * MIN_CHUNK_TOKENS)
        affordable = int(CHUNK_TICKS * self.tick_s / self.token_s)
        return max(MIN_CHUNK_TOKENS, min(self.chunk_tokens, affordable))


def _smoothed(average: float | None, sample: float) -> float:
    return sample if average is None else average + _SMOOTHING * (sample - average)
