"""Image states computed once per image and reused across requests: the resampled (perceiver) latents.

In a chat, the same photo comes back in every later turn's prompt. What the text layers need of it is
its perceiver latents (model/idefics_forward.py projects them into each cross-attention layer's keys
and values once per request), so we keep a small LRU of latents keyed by `ImagePart.key` (the sha256
of the stored image) and only run the vision encoder and the resampler for images we have not seen.
Images without a key are encoded every time.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import torch

from model.batch import PreparedPrompt
from model.idefics_forward import image_latents
from model.loaded import LoadedModel


class ImageFeatureCache:
    """A bounded LRU of image latents (one `(latents, dim)` tensor per image), kept on the model's device."""

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


def image_latents_for(
    loaded: LoadedModel,
    prompt: PreparedPrompt,
    keys: Sequence[str | None],
    cache: ImageFeatureCache | None,
) -> torch.Tensor | None:
    """`(images, latents, dim)` latents of one prompt's images, from the cache where possible; None without images."""
    if not prompt.num_images:
        return None
    with torch.inference_mode():
        found = [cache.get(key) if cache is not None else None for key in keys]
        missing = [slot for slot, latents in enumerate(found) if latents is None]
        if missing:
            encoded = image_latents(loaded.model, _encode(loaded, prompt.pixel_values[missing]))
            if cache is not None:
                cache.misses += len(missing)
            for slot, latents in zip(missing, encoded):
                found[slot] = latents
                if cache is not None:
                    cache.put(keys[slot], latents)
        return torch.stack(found)


def _encode(loaded: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    """Run the vision encoder the way `IdeficsModel.forward` does on `pixel_values`."""
    idefics = loaded.model.model
    pixels = pixels.to(dtype=idefics.dtype, device=loaded.device).contiguous()
    return idefics.vision_model(pixel_values=pixels, interpolate_pos_encoding=False).last_hidden_state
