"""Vision-encoder outputs computed once per image and reused across requests.

In a chat, the same photo comes back in every later turn's prompt. IDEFICS' `generate` accepts the vision
encoder's output (`image_encoder_embeddings`) instead of `pixel_values` and then gives the same tokens,
so we keep a small LRU of encoder outputs keyed by `ImagePart.key` (the sha256 of the stored image) and
only run the encoder for images we have not seen. Images without a key are encoded every time.
Slots a row does not use (it has fewer images than the batch's widest row) are zeros: the image
attention mask hides them, exactly as it hides the zero pixels of the uncached path.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import torch

from model.batch import PreparedPrompt
from model.loaded import LoadedModel


class ImageFeatureCache:
    """A bounded LRU of encoder outputs (one `(patches, dim)` tensor per image), kept on the model's device."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._features: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._features)

    def get(self, key: str | None) -> torch.Tensor | None:
        if key is None or key not in self._features:
            return None
        self._features.move_to_end(key)
        self.hits += 1
        return self._features[key]

    def put(self, key: str | None, features: torch.Tensor) -> None:
        if key is None or self.capacity <= 0:
            return
        self._features[key] = features
        self._features.move_to_end(key)
        while len(self._features) > self.capacity:
            self._features.popitem(last=False)


def encoder_embeddings(
    loaded: LoadedModel,
    prompts: Sequence[PreparedPrompt],
    keys: Sequence[Sequence[str | None]],
    cache: ImageFeatureCache,
) -> torch.Tensor:
    """`(batch, max_images, patches, dim)` encoder outputs for the batch, from the cache where possible.

    Every prompt must have at least one image between them (a batch without images needs no encoder).
    """
    with torch.inference_mode():
        return _gather(loaded, prompts, keys, cache)


def _gather(loaded, prompts, keys, cache) -> torch.Tensor:
    per_row: list[list[torch.Tensor | None]] = []
    missing: list[tuple[int, int]] = []
    for row, (prompt, row_keys) in enumerate(zip(prompts, keys)):
        cached = [cache.get(key) for key in row_keys]
        missing += [(row, slot) for slot, features in enumerate(cached) if features is None]
        per_row.append(cached)
    if missing:
        pixels = torch.stack([prompts[row].pixel_values[slot] for row, slot in missing])
        encoded = _encode(loaded, pixels)
        cache.misses += len(missing)
        for (row, slot), features in zip(missing, encoded):
            per_row[row][slot] = features
            cache.put(keys[row][slot], features)
    sample = next(features for row in per_row for features in row)
    max_images = max(1, max(len(row) for row in per_row))
    out = torch.zeros((len(prompts), max_images, *sample.shape), dtype=sample.dtype, device=sample.device)
    for row, features in enumerate(per_row):
        for slot, tensor in enumerate(features):
            out[row, slot] = tensor
    return out


def _encode(loaded: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    """Run the vision encoder the way `IdeficsModel.forward` does on `pixel_values`."""
    idefics = loaded.model.model
    pixels = pixels.to(dtype=idefics.dtype, device=loaded.device).contiguous()
    return idefics.vision_model(pixel_values=pixels, interpolate_pos_encoding=False).last_hidden_state
