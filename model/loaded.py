"""What the loader hands to the prompt builder and the generation service: a model and how to talk to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

END_OF_UTTERANCE = "<end_of_utterance>"
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"


@dataclass(frozen=True)
class LoadOptions:
    model_id: str = "HuggingFaceM4/idefics-9b-instruct"
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    quantization: str = "none"  # none | 8bit | 4bit
    # "auto" (spread over the GPUs, then CPU RAM, then `offload_folder` if given), a device, or
    # accelerate's module → device map; None: transformers' default placement.
    device_map: str | dict[str, str | int] | None = "auto"
    offload_folder: str | None = None  # where weights offloaded to "disk" are kept


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # IdeficsForVisionText2Text, in eval mode
    processor: Any  # IdeficsProcessor
    model_id: str
    device: Any  # torch.device that inputs must be moved to
    dtype: Any  # torch.dtype of the weights/compute
    max_positions: int  # context window (2048 for the real checkpoints)
    end_of_utterance_id: int
    eos_token_id: int
    image_token_ids: tuple[int, int]  # (<image>, <fake_token_around_image>), banned during generation
    load_seconds: float = 0.0
