"""Served-format tokenization: the ids idefics was trained on and is served with, whatever its files say.

idefics's tokenizer is LLaMA's SentencePiece model plus three added tokens. In training, and in TGI (which
runs the checkpoint's tokenizer.json as it is), every text segment between two special tokens starts with
SentencePiece's dummy prefix "▁": `<s>User:` is `[1, 4911, 29901]` ("▁User"), and `"\\nAssistant:"` after
`<end_of_utterance>` is `[29871, 13, 7900, 22137, 29901]`. transformers 5 rebuilds a LLaMA tokenizer's
pre-tokenizer from its `legacy` flag, which defaults to False and which `save_pretrained` does not store;
without it only the very first segment gets the "▁" (`[1, 2659, 29901]`), so every turn boundary of every
prompt would differ from what the model learnt.

Two things keep the ids right:
- the loader asks for the legacy pre-tokenizer (`SERVED_FORMAT_OPTIONS`), so the processor agrees;
- prompts are encoded segment by segment (`SegmentEncoder`): each text segment between special tokens is
  tokenized on its own, which gives it the dummy prefix whatever the prefix setting. For a byte-level BPE
  tokenizer (our tiny test checkpoints) this is exactly how added tokens split a text anyway, so its ids
  do not change.
`check_tokenization` compares the two at load, and its `describe()` is logged: the tokenization in force.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN

# Passed to `from_pretrained`: LLaMA tokenizers then prepend "▁" to every segment ("always"), as in
# training; other tokenizers ignore it.
SERVED_FORMAT_OPTIONS = {"legacy": True}
DUMMY_PREFIX = "\u2581"
_IMAGE = FAKE_IMAGE_TOKEN + IMAGE_TOKEN + FAKE_IMAGE_TOKEN
_PROBE_SEGMENTS = ("User:", _IMAGE, "Can you tell me a story?", END_OF_UTTERANCE, "\nAssistant:")


class SegmentEncoder:
    """Encodes text holding special tokens the way the model was trained: each segment between them alone."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        added = {token.content for token in tokenizer.added_tokens_decoder.values()}
        added = sorted(added, key=len, reverse=True)  # the longest first, as the tokenizer matches them
        self._special_ids = {content: tokenizer.convert_tokens_to_ids(content) for content in added}
        self._split = re.compile("(" + "|".join(map(re.escape, added)) + ")") if added else None

    def encode(self, text: str) -> list[int]:
        """Special tokens become their ids; every other segment is tokenized on its own, no BOS added."""
        pieces = self._split.split(text) if self._split else [text]
        segments = [piece for piece in pieces[0::2] if piece]  # odd positions hold the special tokens
        encoded = iter(self._tokenizer(segments, add_special_tokens=False)["input_ids"] if segments else ())
        ids: list[int] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                ids.append(self._special_ids[piece])
            elif piece:
                ids.extend(next(encoded))
        return ids


@dataclass(frozen=True)
class TokenizationCheck:
    """What the loaded tokenizer does with a prompt, checked against the served-format rule."""

    tokenizer_class: str
    sentencepiece: bool  # its pieces mark word starts with "▁" (LLaMA), unlike a byte-level BPE
    dummy_prefix: bool  # a segment on its own starts with "▁": the served format is reachable
    processor_agrees: bool  # tokenizing the whole text gives the same ids as segment by segment
    example: str  # the start of every prompt, "<s>User:" ...
    example_ids: tuple[int, ...]  # ... and its ids, e.g. [1, 4911, 29901] for idefics

    @property
    def served_format(self) -> bool:
        return self.dummy_prefix or not self.sentencepiece

    def describe(self) -> str:
        example = f"{self.example!r} -> {list(self.example_ids)}"
        if not self.sentencepiece:
            return (
                f"Tokenization: {self.tokenizer_class}, not SentencePiece (no dummy prefix); prompts are "
                f"tokenized segment by segment between special tokens ({example})."
            )
        if not self.dummy_prefix:
            return (
                f"Tokenization: {self.tokenizer_class} (SentencePiece) adds no dummy prefix '▁' to text; "
                f"prompts will NOT match the format the model was trained on ({example})."
            )
        agreement = (
            "the processor agrees"
            if self.processor_agrees
            else "the processor's own whole-text tokenization differs (prompts do not use it)"
        )
        return (
            f"Tokenization: {self.tokenizer_class} (SentencePiece) in the served format: every text "
            f"segment between special tokens starts with the dummy prefix '▁', as in training and in TGI "
            f"({example}); {agreement}."
        )


def check_tokenization(tokenizer: Any) -> TokenizationCheck:
    """Tokenize a probe prompt whole and segment by segment, and say which tokenization is in force."""
    encoder = SegmentEncoder(tokenizer)
    bos = tokenizer.bos_token or ""
    probe = bos + "".join(_PROBE_SEGMENTS)
    whole = tokenizer(probe, add_special_tokens=False)["input_ids"]
    pieces = _pieces(tokenizer, "User: the cat")
    return TokenizationCheck(
        tokenizer_class=type(tokenizer).__name__,
        sentencepiece=any(piece.startswith(DUMMY_PREFIX) for piece in pieces),
        dummy_prefix=pieces[0].startswith(DUMMY_PREFIX),
        processor_agrees=list(whole) == encoder.encode(probe),
        example=bos + _PROBE_SEGMENTS[0],
        example_ids=tuple(encoder.encode(bos + _PROBE_SEGMENTS[0])),
    )


def _pieces(tokenizer: Any, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
