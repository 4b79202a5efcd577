"""The running batch of the continuous-batching loop and its verbs: step, filter, concatenate.

This is what `IdeficsForVisionText2Text.generate` does between forward passes, made so that rows can
leave and join between steps. All of a row's state lives here: its `DecodeRow` (stopper, sampler,
prompt and generated ids) and its slice of the batch's tensors — the self-attention KV cache, the
attention mask, its image keys/values for every cross-attention layer (computed once when it joined,
model/idefics_forward.py) and the mask of the image its next token attends to (the most recent image
before it). Every step feeds one token per row; position ids come from the attention mask's
cumulative sum, so left padding of any width leaves every row's positions alone. `step` returns one
`StepEvent` per row (model/generation.py) for the worker to deliver.

Rows that finish or are cancelled are index-selected out; a newly prefilled row (model/prefill.py) is
joined by left-padding the shorter KV cache and attention mask so both end at the same column, and by
zero-padding the image axis (the image mask hides those slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from model import idefics_forward
from model.generation import BatchRow, RowSink, StepEvent, make_row, stop_token_ids
from model.idefics_forward import ImageKV
from model.kv_cache import GrowingLayer, spare_for
from model.loaded import LoadedModel
from model.sampling import RowSampler
from model.types import GenerationParams


@dataclass(eq=False)
class DecodeRow:
    """One request in the running batch: where its text goes (`output`), how it picks tokens, its ids."""

    output: BatchRow
    sampler: RowSampler
    prompt_ids: tuple[int, ...] = ()
    image_keys: tuple[str | None, ...] = ()
    generated: list[int] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.output.stopper.finished

    @property
    def sink(self) -> RowSink:
        return self.output.sink

    @property
    def ids_in_cache(self) -> tuple[int, ...]:
        """The tokens whose KV the cache holds: the prompt and every generated token fed back so far."""
        return self.prompt_ids + tuple(self.generated[:-1])

    def take(self, token_id: int) -> StepEvent | None:
        if self.finished:
            return None
        self.generated.append(token_id)
        self.sampler.accept(token_id)
        return self.output.advance(token_id)


def new_row(
    loaded: LoadedModel, params: GenerationParams, sink: RowSink, prompt_ids, image_keys=()
) -> DecodeRow:
    """A fresh row for a request: its stopper (text, stop rules) and its sampler (token choice)."""
    sampler = RowSampler(
        params,
        prompt_ids,
        banned_token_ids=loaded.image_token_ids,
        stop_token_ids=stop_token_ids(loaded),
        device=loaded.device,
    )
    return DecodeRow(
        output=make_row(loaded, params, sink, ignore_stop=params.ignore_stop),
        sampler=sampler,
        prompt_ids=tuple(prompt_ids),
        image_keys=tuple(image_keys),
    )


@dataclass(eq=False)
class RunningBatch:
    """Model state for the rows being decoded; `next_tokens` were chosen but not yet fed to the model."""

    rows: list[DecodeRow]
    cache: object  # transformers DynamicCache, batch-first
    attention_mask: torch.Tensor  # (batch, cached length)
    image_kv: ImageKV  # per cross-attention layer: (batch, heads, images * latents, head_dim)
    image_mask: torch.Tensor  # (batch, 1, images): which image each row's next token attends to
    next_tokens: torch.Tensor  # (batch, 1)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cached_length(self) -> int:
        return int(self.attention_mask.shape[1])

    def row_kv(self, index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Row `index`'s cached keys and values per layer, `(heads, its length, head_dim)`, no padding."""
        length = int(self.attention_mask[index].sum())
        return [(layer.keys[index, :, -length:], layer.values[index, :, -length:]) for layer in self.cache.layers]


def step(model, batch: RunningBatch) -> list[StepEvent]:
    """Feed every row its pending token, then choose each row's next one (one forward pass)."""
    with torch.inference_mode():
        ones = batch.attention_mask.new_ones((len(batch), 1))
        attention_mask = torch.cat([batch.attention_mask, ones], dim=1)
        logits = idefics_forward.forward(
            model,
            input_ids=batch.next_tokens,
            attention_mask=attention_mask,
            cache=batch.cache,
            image_kv=batch.image_kv,
            image_mask=batch.image_mask,
        )
        batch.attention_mask = attention_mask
        batch.next_tokens, events = choose(batch.rows, logits)
    return events


def choose(rows: Sequence[DecodeRow], logits: torch.Tensor) -> tuple[torch.Tensor, list[StepEvent]]:
    """Each row picks its token with its own sampler; one device->host copy for the whole batch."""
    chosen = torch.cat([row.sampler.choose(logits[index]) for index, row in enumerate(rows)])
    events = [row.take(token_id) for row, token_id in zip(rows, chosen.tolist(), strict=True)]
    return chosen.unsqueeze(1), [event for event in events if event is not None]


@torch.inference_mode()
def filter_rows(batch: RunningBatch, keep: Sequence[int]) -> RunningBatch | None:
    """Keep only the rows at `keep` (in that order); None when no row is left."""
    if not keep:
        return None
    if list(keep) == list(range(len(batch))):
        return batch
    index = torch.tensor(list(keep), dtype=torch.long, device=batch.attention_mask.device)
    for layer in batch.cache.layers:  # what DynamicCache.batch_select_indices does, on each layer's device
        layer.keys = layer.keys[index.to(layer.keys.device)]
        layer.values = layer.values[index.to(layer.values.device)]
    batch.rows = [batch.rows[i] for i in keep]
    batch.attention_mask = batch.attention_mask[index]
    batch.image_kv = idefics_forward.select_rows(batch.image_kv, index)
    batch.image_mask = batch.image_mask[index]
    batch.next_tokens = batch.next_tokens[index]
    _drop_shared_left_padding(batch)
    return batch


def _drop_shared_left_padding(batch: RunningBatch) -> None:
    """Cut the cache columns that are padding for every remaining row (left by rows that are gone)."""
    used = batch.attention_mask.sum(dim=0) > 0
    first_used = int(used.int().argmax())
    if first_used == 0:
        return
    batch.attention_mask = batch.attention_mask[:, first_used:]
    for layer in batch.cache.layers:
        layer.keys = layer.keys[..., first_used:, :]
        layer.values = layer.values[..., first_used:, :]


@torch.inference_mode()
def concatenate(running: RunningBatch, newcomers: RunningBatch) -> RunningBatch:
    """One batch holding `running`'s rows then `newcomers`' rows, aligned at the right edge."""
    length = max(running.cached_length, newcomers.cached_length)
    for old, new in zip(running.cache.layers, newcomers.cache.layers, strict=True):
        # One buffer, with room for the next steps' tokens: written once, not padded then concatenated.
        keys, values = _joined(old.keys, new.keys, length), _joined(old.values, new.values, length)
        if isinstance(old, GrowingLayer):
            old.adopt(keys, values, length)
        else:
            old.keys, old.values = keys[..., :length, :], values[..., :length, :]
    images = max(running.image_mask.shape[-1], newcomers.image_mask.shape[-1])
    slots = images * _latents_per_image(running)
    running.rows = running.rows + newcomers.rows
    running.attention_mask = torch.cat(
        [_left_pad(running.attention_mask, length, 1), _left_pad(newcomers.attention_mask, length, 1)]
    )
    running.image_kv = idefics_forward.concat_rows(
        idefics_forward.pad_slots(running.image_kv, slots), idefics_forward.pad_slots(newcomers.image_kv, slots)
    )
    running.image_mask = torch.cat(
        [_right_pad(running.image_mask, images, 2), _right_pad(newcomers.image_mask, images, 2)]
    )
    running.next_tokens = torch.cat([running.next_tokens, newcomers.next_tokens])
    return running


def _joined(first: torch.Tensor, second: torch.Tensor, length: int) -> torch.Tensor:
    """`first`'s rows then `second`'s, right-aligned at column `length`, in a buffer with spare columns."""
    rows = first.shape[0] + second.shape[0]
    buffer = first.new_zeros((rows, first.shape[1], length + spare_for(length), first.shape[3]))
    buffer[: first.shape[0], :, length - first.shape[2] : length] = first
    buffer[first.shape[0] :, :, length - second.shape[2] : length] = second
    return buffer


def _latents_per_image(batch: RunningBatch) -> int:
    return batch.image_kv[0][0].shape[2] // batch.image_mask.shape[-1] if batch.image_kv else 1


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _right_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)
