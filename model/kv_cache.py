"""A self-attention KV cache whose layers grow in place, with room to spare, instead of by `torch.cat`.

`DynamicCache` appends each step's keys and values with `torch.cat`, which allocates and copies the
whole cache of every layer at every decode step: with a long row in the batch (a 1900-token newcomer
joined to rows that are streaming, all padded to its length) that copy, and the fresh memory it needs,
cost more than the step's arithmetic. Here each layer keeps a buffer with spare columns and writes new
tokens into it; `keys`/`values` are views of the filled part, so every reader of a `DynamicCache`
layer (the attention, `RunningBatch.row_kv`, the prefix cache) sees what it saw before. Code that sets
`keys`/`values` itself (selecting rows, cutting padding) simply gets a fresh buffer at the next step.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Spare columns a layer allocates when it must grow: a quarter of its length, at least this many.
MIN_SPARE_TOKENS = 64


def spare_for(length: int) -> int:
    return max(MIN_SPARE_TOKENS, length // 4)


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` that appends into spare capacity; `adopt` takes a buffer built elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not self._owns_views() or self._key_buffer.shape[-2] < length + new:
            self._regrow(length + new + spare_for(length + new))
        self._key_buffer[..., length : length + new, :].copy_(key_states)
        self._value_buffer[..., length : length + new, :].copy_(value_states)
        self._show(length + new)
        return self.keys, self.values

    def adopt(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int) -> None:
        """Use these buffers (`(batch, heads, capacity, head_dim)`), of which the first `length` columns are filled."""
        self.device = key_buffer.device
        self.is_initialized = True
        self._key_buffer, self._value_buffer = key_buffer, value_buffer
        self._show(length)

    def _owns_views(self) -> bool:
        return (
            self._key_buffer is not None
            and self.keys.data_ptr() == self._key_buffer.data_ptr()
            and self.values.data_ptr() == self._value_buffer.data_ptr()
            and self.keys.shape[:-2] == self._key_buffer.shape[:-2]
        )

    def _regrow(self, capacity: int) -> None:
        length = self.keys.shape[-2]
        shape = (*self.keys.shape[:-2], capacity, self.keys.shape[-1])
        self._key_buffer = self.keys.new_empty(shape)
        self._value_buffer = self.values.new_empty(shape)
        self._key_buffer[..., :length, :].copy_(self.keys)
        self._value_buffer[..., :length, :].copy_(self.values)

    def _show(self, length: int) -> None:
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]


def growing_cache(config) -> DynamicCache:
    """A `DynamicCache` for `config` whose layers are `GrowingLayer`s."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache
