"""Option scores for /classify from TGI's prompt log-probabilities (`decoder_input_details`).

TGI can return, for a prompt, each token's log-probability given the tokens before it. Sending the
prompt once alone and once per option (the option as the assistant's whole reply, then
`<end_of_utterance>`, as model/scoring.py scores it locally) gives each option's log-likelihood: the
sum over the tokens after the part it shares with the prompt alone. Comparing token ids rather than
counting tokens locally keeps this right whatever the server's tokenizer does at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def score_from_prefills(prompt_alone: Sequence[Any], with_options: Sequence[Sequence[Any]]) -> list[float]:
    """Each option's summed log-probability; the prefill tokens have `.id` and `.logprob`."""
    base = [token.id for token in prompt_alone]
    scores = []
    for prefill in with_options:
        shared = _shared_prefix(base, [token.id for token in prefill])
        scores.append(sum(token.logprob or 0.0 for token in prefill[shared:]))
    return scores


def _shared_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return length
