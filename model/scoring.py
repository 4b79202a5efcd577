"""Option scoring for classification: how likely the model finds each candidate reply.

Instead of generating and parsing, we ask the model how probable each option is as the assistant's
whole reply to the last user turn: the option's tokens after the prompt's closing `"\\nAssistant:"`, then
`<end_of_utterance>` (so "yes" is not rewarded for being the start of "yes, but..."). All options share
the prompt, so they are scored together in one right-padded forward pass per chunk, and only the logits
over the options' positions are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from model.batch import PreparedPrompt, collate, image_dims
from model.generation import pad_token_id
from model.loaded import LoadedModel

# The prompt ends with "\nAssistant:". The model learnt a reply as part of the segment that starts there
# ("\nAssistant: dog<end_of_utterance>"), so an option's ids are that segment's ids after the anchor's:
# "▁dog" for LLaMA's SentencePiece, whose leading "▁" is the option's space.
_ANCHOR = "\nAssistant:"


@dataclass(frozen=True)
class OptionScore:
    option: str
    log_prob: float  # sum of the log-probabilities of the option's tokens and <end_of_utterance>
    tokens: int

    @property
    def mean_log_prob(self) -> float:
        return self.log_prob / self.tokens


def _literal_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def continuation_ids(tokenizer: Any, option: str, end_of_utterance_id: int) -> list[int]:
    """Token ids of `option` written as the whole reply after "\\nAssistant:", then <end_of_utterance>."""
    anchor = _literal_ids(tokenizer, _ANCHOR)
    with_option = _literal_ids(tokenizer, f"{_ANCHOR} {option.strip()}")
    if with_option[: len(anchor)] == anchor and len(with_option) > len(anchor):
        ids = with_option[len(anchor) :]
    else:
        ids = _literal_ids(tokenizer, f" {option.strip()}")
    return [*ids, end_of_utterance_id]


def score_continuations(
    loaded: LoadedModel,
    prompt: PreparedPrompt,
    continuations: Sequence[Sequence[int]],
    options: Sequence[str],
    *,
    max_batch_size: int = 8,
) -> list[OptionScore]:
    """Score every continuation of the same prompt; runs the model, so call it on the worker thread."""
    scores: list[OptionScore] = []
    for start in range(0, len(continuations), max_batch_size):
        chunk = continuations[start : start + max_batch_size]
        sums = _score_chunk(loaded, prompt, chunk)
        for offset, (ids, total) in enumerate(zip(chunk, sums)):
            scores.append(OptionScore(option=options[start + offset], log_prob=total, tokens=len(ids)))
    return scores


def _score_chunk(loaded: LoadedModel, prompt: PreparedPrompt, chunk: Sequence[Sequence[int]]) -> list[float]:
    sequences = [PreparedPrompt((*prompt.input_ids, *ids), prompt.pixel_values) for ids in chunk]
    batch = collate(
        sequences,
        pad_token_id=pad_token_id(loaded),
        image_token_id=loaded.image_token_ids[0],
        image_dims=image_dims(loaded),
        padding_side="right",
    )
    longest = max(len(ids) for ids in chunk)
    # With right padding every option starts right after the shared prompt, so the logits that predict
    # option token t sit at kept position t when we keep the last `longest + 1` positions.
    with torch.inference_mode():
        logits = loaded.model(**batch.model_inputs(loaded.device), logits_to_keep=longest + 1).logits
    log_probs = torch.log_softmax(logits[:, :longest].float(), dim=-1).cpu()
    sums = []
    for row, ids in enumerate(chunk):
        targets = torch.tensor(ids, dtype=torch.long)
        picked = log_probs[row, torch.arange(len(ids)), targets]
        sums.append(float(picked.sum()))
    return sums
