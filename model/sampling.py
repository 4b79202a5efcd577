"""Choosing one request's next token from its row of logits, with that request's own settings.

In a continuous batch every row can have different settings (greedy or sampled, temperature, top_p,
repetition penalty, seed, ignore_stop), so each row keeps its own transformers `LogitsProcessorList`
(in the order `generate` builds them: repetition penalty, banned words, minimum length, then the
sampling warpers) and, when seeded, its own `torch.Generator`: a seeded request draws the same numbers
whoever shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    LogitsProcessorList,
    NoBadWordsLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from model.types import GenerationParams


class RowSampler:
    """One row's logits processors, random generator and token history (for the repetition penalty)."""

    def __init__(
        self,
        params: GenerationParams,
        prompt_ids: Sequence[int],
        *,
        banned_token_ids: Sequence[int],
        stop_token_ids: Sequence[int],
        device: torch.device | str = "cpu",
    ) -> None:
        self.do_sample = params.do_sample
        self._ids = list(prompt_ids)
        self._needs_history = params.repetition_penalty != 1.0
        self._processors = _processors(params, banned_token_ids, stop_token_ids, device)
        self._seed = params.seed if params.do_sample else None
        self._generator: torch.Generator | None = None

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token (a 1-element tensor on the logits' device) from this row's `(vocab,)` logits."""
        scores = logits.unsqueeze(0).float()
        scores = self._processors(self._history(scores.device), scores)
        if not self.do_sample:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores, dim=-1)
        if self._seed is not None and self._generator is None:  # made where the logits live (any GPU)
            self._generator = torch.Generator(device=probs.device).manual_seed(self._seed)
        return torch.multinomial(probs, num_samples=1, generator=self._generator).squeeze(1)

    def accept(self, token_id: int) -> None:
        self._ids.append(token_id)

    def _history(self, device: torch.device) -> torch.Tensor:
        if not self._needs_history:  # no processor of ours reads the history then: skip the copy
            return torch.empty((1, 0), dtype=torch.long, device=device)
        return torch.tensor([self._ids], dtype=torch.long, device=device)


def _processors(params: GenerationParams, banned, stop_ids, device) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    processors.append(NoBadWordsLogitsProcessor([[token] for token in banned], eos_token_id=list(stop_ids)))
    if params.ignore_stop:
        # Benchmarks want every row to run its full length: forbid the stop tokens instead of stopping.
        processors.append(SuppressTokensLogitsProcessor(list(stop_ids), device=device))
    if params.do_sample:
        processors.append(TemperatureLogitsWarper(params.temperature))
        processors.append(TopPLogitsWarper(params.top_p))
    return processors
