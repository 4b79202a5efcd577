"""The served-format rule, written independently of transformers, as the reference the tests compare with.

idefics-9b-instruct was trained (and TGI serves it) with every text segment between two special tokens
encoded by SentencePiece on its own, so each gets SentencePiece's dummy prefix "▁". Here the
`sentencepiece` library itself encodes the segments of a prompt text.
"""

from __future__ import annotations

import re

# idefics's added tokens and LLaMA's control pieces, with their real ids.
SPECIAL_IDS = {"<s>": 1, "</s>": 2, "<fake_token_around_image>": 32000, "<image>": 32001, "<end_of_utterance>": 32002}
IMAGE = "<fake_token_around_image><image><fake_token_around_image>"
EOU = "<end_of_utterance>"
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
