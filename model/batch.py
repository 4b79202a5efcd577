"""Turning built prompts into the padded tensors one IDEFICS forward pass or `generate` call takes.

The processor can batch too, but it re-tokenizes text items; the prompt builder already produced
literal-safe token ids, so we pad those ids ourselves and only borrow the processor's image processor.
Images are processed one request at a time, so a broken image fails its own request and nobody else's.
The image attention mask follows IDEFICS' rule: each text token cross-attends only to the most recent
image before it (tokens before the first image, and padding, see none) — the same mask the processor
builds with `image_attention_mask_for_packed_input_ids` + `incremental_to_binary_attention_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from model.loaded import LoadedModel


@dataclass(frozen=True)
class PreparedPrompt:
    """One request's prompt, ready to be padded into a batch: token ids and its images' pixels."""

    input_ids: tuple[int, ...]
    pixel_values: torch.Tensor | None  # (num_images, channels, height, width), or None without images

    @property
    def num_images(self) -> int:
        return 0 if self.pixel_values is None else int(self.pixel_values.shape[0])


@dataclass(frozen=True)
class CollatedBatch:
    """Padded tensors for a batch of prompts, in the shapes `IdeficsForVisionText2Text` expects."""

    input_ids: torch.Tensor  # (batch, length)
    attention_mask: torch.Tensor  # (batch, length)
    pixel_values: torch.Tensor  # (batch, max_images, channels, height, width)
    image_attention_mask: torch.Tensor  # (batch, length, max_images)
    prompt_lengths: tuple[int, ...]

    def model_inputs(self, device: Any) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids.to(device),
            "attention_mask": self.attention_mask.to(device),
            "pixel_values": self.pixel_values.to(device),
            "image_attention_mask": self.image_attention_mask.to(device),
        }


def prepare_prompt(loaded: LoadedModel, input_ids: Sequence[int], images: Sequence[Any]) -> PreparedPrompt:
    """Run the image processor over one prompt's images; raises whatever the processor raises."""
    image_token_id = loaded.image_token_ids[0]
    slots = sum(1 for token in input_ids if token == image_token_id)
    if slots != len(images):
        raise ValueError(f"prompt has {slots} image slots but {len(images)} images")
    pixel_values = None
    if images:
        pixel_values = loaded.processor.image_processor(list(images), return_tensors="pt")
        if not isinstance(pixel_values, torch.Tensor):  # a BatchFeature from a newer processor
            pixel_values = pixel_values["pixel_values"]
    return PreparedPrompt(input_ids=tuple(input_ids), pixel_values=pixel_values)


def image_dims(loaded: LoadedModel) -> tuple[int, int, int]:
    image_processor = loaded.processor.image_processor
    size = image_processor.image_size
    return (image_processor.image_num_channels, size, size)


def collate(
    prompts: Sequence[PreparedPrompt],
    *,
    pad_token_id: int,
    image_token_id: int,
    image_dims: tuple[int, int, int],
    padding_side: Literal["left", "right"] = "left",
) -> CollatedBatch:
    """Pad prompts to a common length (left for generation, right for scoring) and build the masks."""
    length = max(len(p.input_ids) for p in prompts)
    max_images = max(1, max(p.num_images for p in prompts))
    batch = len(prompts)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    pixel_values = torch.zeros((batch, max_images, *image_dims), dtype=torch.float32)
    image_attention_mask = torch.zeros((batch, length, max_images), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids = torch.tensor(prompt.input_ids, dtype=torch.long)
        span = slice(length - len(ids), length) if padding_side == "left" else slice(0, len(ids))
        input_ids[row, span] = ids
        attention_mask[row, span] = 1
        image_attention_mask[row, span] = most_recent_image_mask(ids, image_token_id, max_images)
        if prompt.pixel_values is not None:
            pixel_values[row, : prompt.num_images] = prompt.pixel_values
    return CollatedBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        image_attention_mask=image_attention_mask,
        prompt_lengths=tuple(len(p.input_ids) for p in prompts),
    )


def most_recent_image_mask(ids: torch.Tensor, image_token_id: int, num_images: int) -> torch.Tensor:
    """(length, num_images) one-hot: row i marks the last image whose <image> token is at or before i."""
    image_index = torch.cumsum(ids == image_token_id, dim=0) - 1
    sees_an_image = image_index >= 0
    one_hot = torch.nn.functional.one_hot(image_index.clamp(min=0), num_classes=num_images)
    return one_hot * sees_an_image.unsqueeze(-1)
