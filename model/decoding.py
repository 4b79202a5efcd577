"""The running batch of the continuous-batching loop and its verbs: prefill, filter, concatenate, step.

This is a hand-written version of what `IdeficsForVisionText2Text.generate` does between forward passes
(see its `prepare_inputs_for_generation` / `_update_model_kwargs_for_generation` in transformers 5.x),
made so that rows can leave and join between steps:
- the first forward (prefill) sees the whole left-padded prompt with its pixels (or cached encoder
  outputs) and the full image attention mask; it returns the KV cache and the vision encoder's outputs;
- every later forward feeds one token per row, the attention mask grown by one column, the encoder
  outputs as `image_encoder_embeddings`, and as image attention mask the mask row of the row's last
  token (the most recent image before it). Position ids come from the attention mask's cumulative sum,
  so left padding of any width leaves every row's positions alone.
Rows that finish or are cancelled are index-selected out (KV cache, masks, image states); a newly
prefilled batch is joined by left-padding the shorter KV cache and attention mask so both end at the
same column, and by zero-padding the image axis (the image mask hides those slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from model.batch import CollatedBatch
from model.generation import BatchRow, RowSink, make_row, stop_token_ids
from model.loaded import LoadedModel
from model.sampling import RowSampler
from model.types import GenerationParams


@dataclass(eq=False)
class DecodeRow:
    """One request in the running batch: where its text goes (`output`) and how it picks tokens."""

    output: BatchRow
    sampler: RowSampler
    generated: list[int] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.output.stopper.finished

    @property
    def sink(self) -> RowSink:
        return self.output.sink

    def take(self, token_id: int) -> None:
        self.generated.append(token_id)
        self.sampler.accept(token_id)
        self.output.step(token_id)


def new_row(loaded: LoadedModel, params: GenerationParams, sink: RowSink, prompt_ids) -> DecodeRow:
    """A fresh row for a request: its stopper (text, stop rules) and its sampler (token choice)."""
    sampler = RowSampler(
        params,
        prompt_ids,
        banned_token_ids=loaded.image_token_ids,
        stop_token_ids=stop_token_ids(loaded),
        device=loaded.device,
    )
    return DecodeRow(output=make_row(loaded, params, sink, ignore_stop=params.ignore_stop), sampler=sampler)


@dataclass(eq=False)
class RunningBatch:
    """Model state for the rows being decoded; `next_tokens` were chosen but not yet fed to the model."""

    rows: list[DecodeRow]
    cache: object  # transformers DynamicCache, batch-first
    attention_mask: torch.Tensor  # (batch, cached length)
    image_states: torch.Tensor  # (batch, images, patches, dim): vision encoder outputs
    image_mask: torch.Tensor  # (batch, 1, images): which image each row's next token attends to
    next_tokens: torch.Tensor  # (batch, 1)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cached_length(self) -> int:
        return int(self.attention_mask.shape[1])


def prefill(
    model, rows: Sequence[DecodeRow], batch: CollatedBatch, device, image_features: torch.Tensor | None = None
) -> RunningBatch:
    """Run the prompts of new rows (left-padded) and choose, and route, each row's first token."""
    inputs = batch.model_inputs(device)
    if image_features is not None:
        del inputs["pixel_values"]
        inputs["image_encoder_embeddings"] = image_features
    with torch.inference_mode():
        out = model(**inputs, use_cache=True, logits_to_keep=1)
        size, images = inputs["image_attention_mask"].shape[0], inputs["image_attention_mask"].shape[-1]
        states = out.image_outputs.last_hidden_state
        running = RunningBatch(
            rows=list(rows),
            cache=out.cache,
            attention_mask=inputs["attention_mask"],
            image_states=states.view(size, images, *states.shape[1:]),
            image_mask=inputs["image_attention_mask"][:, -1:, :],
            next_tokens=_choose_and_route(rows, out.logits[:, -1, :]),
        )
    return running


def step(model, batch: RunningBatch) -> None:
    """Feed every row its pending token, then choose and route each row's next one (one forward pass)."""
    with torch.inference_mode():
        ones = batch.attention_mask.new_ones((len(batch), 1))
        attention_mask = torch.cat([batch.attention_mask, ones], dim=1)
        out = model(
            input_ids=batch.next_tokens,
            attention_mask=attention_mask,
            cache=batch.cache,
            image_encoder_embeddings=batch.image_states,
            image_attention_mask=batch.image_mask,
            use_cache=True,
            logits_to_keep=1,
        )
        batch.attention_mask = attention_mask
        batch.next_tokens = _choose_and_route(batch.rows, out.logits[:, -1, :])


def _choose_and_route(rows: Sequence[DecodeRow], logits: torch.Tensor) -> torch.Tensor:
    """Each row picks its token with its own sampler; one device->host copy for the whole batch."""
    chosen = torch.cat([row.sampler.choose(logits[index]) for index, row in enumerate(rows)])
    for row, token_id in zip(rows, chosen.tolist(), strict=True):
        if not row.finished:
            row.take(token_id)
    return chosen.unsqueeze(1)


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
    batch.image_states = batch.image_states[index.to(batch.image_states.device)]
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
        old.keys = torch.cat([_left_pad(old.keys, length, -2), _left_pad(new.keys, length, -2)])
        old.values = torch.cat([_left_pad(old.values, length, -2), _left_pad(new.values, length, -2)])
    images = max(running.image_mask.shape[-1], newcomers.image_mask.shape[-1])
    running.rows = running.rows + newcomers.rows
    running.attention_mask = torch.cat(
        [_left_pad(running.attention_mask, length, 1), _left_pad(newcomers.attention_mask, length, 1)]
    )
    running.image_states = torch.cat(
        [_right_pad(running.image_states, images, 1), _right_pad(newcomers.image_states, images, 1)]
    )
    running.image_mask = torch.cat(
        [_right_pad(running.image_mask, images, 2), _right_pad(newcomers.image_mask, images, 2)]
    )
    running.next_tokens = torch.cat([running.next_tokens, newcomers.next_tokens])
    return running


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
