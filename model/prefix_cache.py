"""Prompt KV states kept for reuse, bounded in bytes: a mode's preamble, a conversation's earlier turns.

Every chat in a mode starts with the same preamble, and every turn of a conversation starts with the
whole previous prompt and answer; their self-attention keys and values are the same each time, so they
are kept here and only the new tokens are prefilled (as vLLM's and SGLang's prefix caching do).

A token's keys and values depend on every token before it and, through IDEFICS's cross-attention, on
the images before it (each text token sees the most recent image before it). So the KV is stored in
blocks of `BLOCK_TOKENS` tokens, each block named by a chain hash of its parent block, its token ids
and the keys (`ImagePart.key`, the image's sha256) of the images whose `<image>` token is in it. A
prefix is reused block by block from the start, as far as every block matches; an image without a key
ends what can be cached. Identical blocks are stored once, whoever computed them: the preamble's blocks
are shared by every chat. Trimming old turns changes the start of a prompt, so none of its old blocks
match and it is computed afresh — correct, and the reason the prompt builder trims several turns at
a time (model/prompt.py), so the trimmed prompt stays the same prefix for a while.

The budget is in bytes; least recently used blocks go first, leaves before their parents (a block is
only reachable through its parents, so a parent is always touched after its children).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

import torch

BLOCK_TOKENS = 16
CPU_DEFAULT_BYTES = 512 * 1024**2
GPU_SHARE_OF_FREE = 0.2
GPU_MAX_BYTES = 8 * 1024**3


def prefix_cache_budget(requested: int | None, device: torch.device | str) -> int:
    """Bytes for the cache: `requested` as given; None: 20% of free GPU memory (≤ 8 GiB), 512 MiB on CPU."""
    if requested is not None:
        return max(0, int(requested))
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(min(free * GPU_SHARE_OF_FREE, GPU_MAX_BYTES))
    return CPU_DEFAULT_BYTES


@dataclass(frozen=True)
class _Block:
    parent: int | None
    tokens: tuple[int, ...]
    image_keys: tuple[str, ...]
    kv: torch.Tensor  # (layers, 2, heads, BLOCK_TOKENS, head_dim)

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


@dataclass(frozen=True)
class PrefixMatch:
    """How many leading prompt tokens have cached KV, and that KV per layer (keys, values)."""

    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # each (1, heads, length, head_dim)


class PrefixCache:
    """Blocks of KV by chain hash, LRU within `capacity_bytes`; used on the model worker's thread only."""

    def __init__(self, capacity_bytes: int, *, block_tokens: int = BLOCK_TOKENS) -> None:
        self.capacity_bytes = capacity_bytes
        self.block_tokens = block_tokens
        self._blocks: collections.OrderedDict[int, _Block] = collections.OrderedDict()
        self.bytes_used = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def _chain(self, token_ids: Sequence[int], image_keys: Sequence[str | None], image_token_id: int):
        """(hash, parent, tokens, keys) for each full block of the prompt that may be cached."""
        images_seen = 0
        parent: int | None = None
        size = self.block_tokens
        for start in range(0, len(token_ids) - size + 1, size):
            tokens = tuple(token_ids[start : start + size])
            count = sum(1 for token in tokens if token == image_token_id)
            keys = tuple(image_keys[images_seen : images_seen + count])
            images_seen += count
            if len(keys) != count or any(key is None for key in keys):
                return  # an image we cannot name: nothing after it can be shared
            digest = hash((parent, tokens, keys))
            yield digest, parent, tokens, keys
            parent = digest

    def lookup(
        self, token_ids: Sequence[int], image_keys: Sequence[str | None], image_token_id: int, *, limit: int
    ) -> PrefixMatch | None:
        """The longest cached prefix of at most `limit` tokens (whole blocks), or None."""
        found: list[_Block] = []
        for digest, parent, tokens, keys in self._chain(token_ids[:limit], image_keys, image_token_id):
            block = self._blocks.get(digest)
            if block is None or block.parent != parent or block.tokens != tokens or block.image_keys != keys:
                break
            found.append(block)
        if not found:
            return None
        self._touch([self._digest_of(block) for block in found])
        kv = torch.cat([block.kv for block in found], dim=3)  # (layers, 2, heads, length, head_dim)
        layers = [(kv[layer, 0].unsqueeze(0), kv[layer, 1].unsqueeze(0)) for layer in range(kv.shape[0])]
        return PrefixMatch(length=len(found) * self.block_tokens, layers=layers)

    def store(
        self,
        token_ids: Sequence[int],
        image_keys: Sequence[str | None],
        image_token_id: int,
        layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        """Keep the KV of `token_ids` (`layers`: each (heads, len(token_ids), head_dim) keys and values)."""
        if self.capacity_bytes <= 0:
            return
        chain = list(self._chain(token_ids, image_keys, image_token_id))
        for index, (digest, parent, tokens, keys) in enumerate(chain):
            if digest in self._blocks:  # computed before, by this conversation or another one
                continue
            span = slice(index * self.block_tokens, (index + 1) * self.block_tokens)
            kv = torch.stack([torch.stack((k[:, span], v[:, span])) for k, v in layers])  # this block only
            block = _Block(parent=parent, tokens=tokens, image_keys=keys, kv=kv)
            self._blocks[digest] = block
            self.bytes_used += block.nbytes
        self._touch([link[0] for link in chain])
        self._evict()

    def _digest_of(self, block: _Block) -> int:
        return hash((block.parent, block.tokens, block.image_keys))

    def _touch(self, digests: Sequence[int]) -> None:
        for digest in reversed(digests):  # the parent ends up more recent than its children
            if digest in self._blocks:
                self._blocks.move_to_end(digest)

    def _evict(self) -> None:
        while self.bytes_used > self.capacity_bytes and self._blocks:
            _digest, block = self._blocks.popitem(last=False)
            self.bytes_used -= block.nbytes
