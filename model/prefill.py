"""A newcomer's prompt read into the KV cache: from its longest cached prefix, in chunks, then joined.

`start_prefill` sets a request up: its images' latents (model/image_features.py) become its
cross-attention keys/values once, for the prompt and every later step; the prefix cache
(model/prefix_cache.py) gives the KV of the longest prefix it already holds (a mode's preamble, the
conversation's previous prompt and answer), so only the rest is computed. `advance` computes up to a
token budget of what is left (the worker runs a decode step of the running rows between two chunks, so
they keep streaming while a long prompt is read); once the whole prompt is in, `finish_prefill` picks
the first token and gives a one-row `RunningBatch` to join the running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model import idefics_forward
from model.batch import PreparedPrompt, most_recent_image_mask
from model.decoding import DecodeRow, RunningBatch, choose
from model.generation import StepEvent
from model.idefics_forward import ImageKV
from model.kv_cache import growing_cache
from model.loaded import LoadedModel
from model.prefix_cache import PrefixCache


@dataclass(eq=False)
class Prefill:
    """One newcomer's prompt being read: what is in its cache so far, and what is left."""

    row: DecodeRow
    input_ids: torch.Tensor  # (1, prompt length)
    image_mask: torch.Tensor  # (1, prompt length, images)
    image_kv: ImageKV
    cache: object  # transformers DynamicCache (model/kv_cache.py)
    done: int  # prompt tokens whose KV is in `cache`
    reused: int  # of those, how many came from the prefix cache
    logits: torch.Tensor | None = None  # the last prompt token's, once `done` reaches the end

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def remaining(self) -> int:
        return self.length - self.done


def latents_per_image(model) -> int:
    config = model.config
    if config.use_resampler:
        return int(config.perceiver_config.resampler_n_latents)
    vision = config.vision_config
    return (vision.image_size // vision.patch_size) ** 2 + 1


def start_prefill(
    loaded: LoadedModel,
    row: DecodeRow,
    prompt: PreparedPrompt,
    latents: torch.Tensor | None,
    prefix_cache: PrefixCache | None,
) -> Prefill:
    """Set a row up for prefill; `latents` are its images' `(images, latents, dim)`, None without images."""
    model, device = loaded.model, loaded.device
    with torch.inference_mode():
        ids = torch.tensor(prompt.input_ids, dtype=torch.long)
        images = max(1, prompt.num_images)
        image_mask = most_recent_image_mask(ids, loaded.image_token_ids[0], images).unsqueeze(0).to(device)
        if latents is None:  # a text-only row: one empty image slot that its mask hides
            dim = model.config.vision_config.embed_dim
            latents = torch.zeros((1, latents_per_image(model), dim), dtype=loaded.dtype, device=device)
        image_kv = idefics_forward.image_kv(model, latents.unsqueeze(0).to(device))
        cache = growing_cache(model.config)
        done = 0
        if prefix_cache is not None:
            match = prefix_cache.lookup(
                prompt.input_ids, row.image_keys, loaded.image_token_ids[0], limit=len(prompt.input_ids) - 1
            )
            if match is not None:
                for index, (keys, values) in enumerate(match.layers):
                    cache.update(keys, values, index)
                done = match.length
    return Prefill(
        row=row,
        input_ids=ids.unsqueeze(0).to(device),
        image_mask=image_mask,
        image_kv=image_kv,
        cache=cache,
        done=done,
        reused=done,
    )


def advance(model, job: Prefill, budget: int | None) -> int:
    """Compute up to `budget` more prompt tokens (None: all that is left); returns how many it did."""
    count = job.remaining if budget is None else min(budget, job.remaining)
    if count <= 0:
        return 0
    end = job.done + count
    with torch.inference_mode():
        logits = idefics_forward.forward(
            model,
            input_ids=job.input_ids[:, job.done : end],
            attention_mask=job.input_ids.new_ones((1, end)),
            cache=job.cache,
            image_kv=job.image_kv,
            image_mask=job.image_mask[:, job.done : end],
        )
    job.done = end
    if job.remaining == 0:
        job.logits = logits
    return count


def prompt_kv(job: Prefill) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The whole prompt's keys and values per layer, `(heads, length, head_dim)`, for the prefix cache."""
    return [(layer.keys[0], layer.values[0]) for layer in job.cache.layers]


def finish_prefill(job: Prefill) -> tuple[RunningBatch, list[StepEvent]]:
    """The first token chosen: a one-row batch ready to join the running one, and the first event."""
    with torch.inference_mode():
        next_tokens, events = choose([job.row], job.logits)
    batch = RunningBatch(
        rows=[job.row],
        cache=job.cache,
        attention_mask=job.input_ids.new_ones((1, job.length)),
        image_kv=job.image_kv,
        image_mask=job.image_mask[:, -1:, :],
        next_tokens=next_tokens,
    )
    return batch, events


def prefill_together(model, jobs: Sequence[Prefill]) -> tuple[RunningBatch, list[StepEvent]]:
    """Newcomers with nothing cached, read in one left-padded forward pass (as `generate` reads a batch).

    Requests that arrive together while nothing is running would otherwise be read one after another;
    one pass over the padded batch costs little more than the longest of them. Padding is on the left
    only, so `RunningBatch.row_kv` still finds each row's KV for the prefix cache.
    """
    if any(job.done for job in jobs):
        raise ValueError("only newcomers without a cached prefix are read together")
    length = max(job.length for job in jobs)
    images = max(job.image_mask.shape[-1] for job in jobs)
    device = jobs[0].input_ids.device
    input_ids = torch.zeros((len(jobs), length), dtype=torch.long, device=device)  # padding is masked out
    attention_mask = torch.zeros_like(input_ids)
    image_mask = jobs[0].image_mask.new_zeros((len(jobs), length, images))
    for index, job in enumerate(jobs):
        input_ids[index, -job.length :] = job.input_ids[0]
        attention_mask[index, -job.length :] = 1
        image_mask[index, -job.length :, : job.image_mask.shape[-1]] = job.image_mask[0]
    image_kv = jobs[0].image_kv
    for job in jobs[1:]:
        image_kv = idefics_forward.concat_rows(image_kv, job.image_kv)
    cache = growing_cache(model.config)
    with torch.inference_mode():
        logits = idefics_forward.forward(
            model,
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache,
            image_kv=image_kv,
            image_mask=image_mask,
        )
        rows = [job.row for job in jobs]
        next_tokens, events = choose(rows, logits)
    for job in jobs:
        job.done = job.length
    batch = RunningBatch(
        rows=rows,
        cache=cache,
        attention_mask=attention_mask,
        image_kv=image_kv,
        image_mask=image_mask[:, -1:, :],
        next_tokens=next_tokens,
    )
    return batch, events
