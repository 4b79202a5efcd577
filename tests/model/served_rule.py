"""The served-format rule, written independently of transformers, as the reference the tests compare with.

idefics-9b-instruct was trained (and TGI serves it) with every text segment between two special tokens
encoded by SentencePiece on its own, so each gets SentencePiece's dummy prefix "▁". Here the
`sentencepiece` library itself encodes the segments of a prompt text.
"""

from __future__ import annotations

import re

# idefics's added tokens and LLaMA's control pieces, with their real ids.
SPECIAL_IDS = {
    "<s>": 1, "</s>": 2, "<fake_token_around_image>": 32000, "<image>": 32001, "<end_of_utterance>": 32002,
}  # fmt: skip
IMAGE = "<fake_token_around_image><image><fake_token_around_image>"
EOU = "<end_of_utterance>"

# TGI's integration snapshot for idefics-9b-instruct (huggingface/text-generation-inference,
# integration-tests/models/__snapshots__/test_idefics/test_idefics.json): its prompt is
# "<s>User:" + IMAGE + TGI_QUESTION, prefilled as TGI_PREFILL; after <end_of_utterance> the model writes
# " \nAssistant:", ASSISTANT_AFTER_EOU.
TGI_QUESTION = "Can you tell me a very short story based on the image?"
TGI_PREFILL = [
    1, 4911, 29901, 32000, 32001, 32000,
    1815, 366, 2649, 592, 263, 1407, 3273, 5828, 2729, 373, 278, 1967, 29973,
]  # fmt: skip
ASSISTANT_AFTER_EOU = [29871, 13, 7900, 22137, 29901]
_SPECIAL = re.compile("(" + "|".join(map(re.escape, SPECIAL_IDS)) + ")")


def served_ids(sentencepiece_model, text: str) -> list[int]:
    """Ids of `text` (special tokens written out) in the served format."""
    ids: list[int] = []
    for index, piece in enumerate(_SPECIAL.split(text)):
        if index % 2:
            ids.append(SPECIAL_IDS[piece])
        elif piece:
            ids.extend(sentencepiece_model.encode(piece))
    return ids
