"""A tiny checkpoint whose greedy output follows a chain of tokens we choose, for stop and scoring tests.

Built from `make_tiny_checkpoint` and then edited, so the real model, processor and loader run; only the
weights are steered. Each link "after token A, write token B" gets its own residual channel: A's
embedding writes 1 there (every other token 0), no layer writes to it, and `lm_head`'s row for B reads
it with a large weight. So the model really generates B after A, whatever else it would have written.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoProcessor, IdeficsForVisionText2Text

from model.tiny import make_tiny_checkpoint

LINK_WEIGHT = 1e4


def make_chain_checkpoint(directory: Path, chain: Sequence[str], tokenizer_path: Path | None = None) -> Path:
    """Write a tiny checkpoint that, after each text in `chain`, strongly prefers the next one.

    Every text must be a single token of the tokenizer (special tokens such as "<image>" included), or
    the name of one of its pieces ("▁cat", "<0x0A>" for the LLaMA tokenizer of `tokenizer_path`); a
    text may appear twice (a cycle).
    """
    make_tiny_checkpoint(directory, tokenizer_path=tokenizer_path)
    tokenizer = AutoProcessor.from_pretrained(directory).tokenizer
    ids = [_single_token(tokenizer, text) for text in chain]
    links: dict[int, int] = {}
    for before, after in itertools.pairwise(ids):
        links.setdefault(before, after)
    model = IdeficsForVisionText2Text.from_pretrained(directory).eval()
    _steer(model, links)
    model.save_pretrained(directory)
    return directory


def _single_token(tokenizer, text: str) -> int:
    piece_id = tokenizer.get_vocab().get(text)
    if piece_id is not None:
        return piece_id
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens for the tiny tokenizer, not one")
    return ids[0]


@torch.no_grad()
def _steer(model: IdeficsForVisionText2Text, links: dict[int, int]) -> None:
    channels = list(range(1, len(links) + 1))
    for layers in (model.model.layers, model.model.gated_cross_attn_layers):
        for name, parameter in layers.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                parameter[channels, :] = 0.0
    embeddings = model.model.embed_tokens
    embeddings.weight[:, channels] = 0.0
    embeddings.additional_embedding.weight[:, channels] = 0.0
    vocab = embeddings.weight.shape[0]
    for channel, (before, after) in zip(channels, links.items()):
        embeddings.weight[before, channel] = 1.0
        if after < vocab:
            model.lm_head.weight[after, channel] = LINK_WEIGHT
        else:  # the IDEFICS special tokens live in the "additional" part of lm_head
            model.lm_head.additional_fc.weight[after - vocab, channel] = LINK_WEIGHT
