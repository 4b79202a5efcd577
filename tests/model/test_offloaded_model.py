"""A model that `device_map` spread out — part of it offloaded, as "auto" does on a GPU too small for it,
or split over several GPUs — answers, with images, exactly as the same weights all in one place.

Accelerate hooks each placed block so that calling it brings its weights in and its inputs over; the
engine uses the gated cross-attention blocks through their parts (model/idefics_forward.py), so this
is what shows it still goes through those hooks. Here the "elsewhere" is the disk, the only second
place a CPU machine has; a second GPU goes through the same hooks.
"""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, TextPart, Turn

PARAMS = GenerationParams(max_new_tokens=8, ignore_stop=True)

# The tiny checkpoint has 2 decoder layers and 2 gated cross-attention blocks: the second of each
# lives on the disk, the rest on the CPU.
SPREAD = {
    "model.embed_tokens": "cpu", "model.vision_model": "cpu", "model.perceiver_resampler": "cpu",
    "model.layers.0": "cpu", "model.gated_cross_attn_layers.0": "cpu",
    "model.layers.1": "disk", "model.gated_cross_attn_layers.1": "disk",
    "model.norm": "cpu", "lm_head": "cpu",
}


def _photo_question(rgb, key: str, question: str) -> Conversation:
    image = ImagePart(Image.new("RGB", (40, 32), rgb), key=key)
    return Conversation(turns=(Turn("user", (image, TextPart(question))),))


async def _answers(loaded, conversations) -> list[str]:
    service = ModelService(loaded, batch_window_s=0.2)
    await service.start()
    try:
        async def one(conversation) -> str:
            async for event in service.stream(conversation, PARAMS):
                if isinstance(event, GenerationResult):
                    return event.text
            raise AssertionError("no result")

        alone = [await one(conversations[0])]
        together = await asyncio.gather(*(one(c) for c in conversations))
        return alone + list(together)
    finally:
        await service.stop()


@pytest.fixture(scope="module")
def spread_model(tiny_checkpoint, tmp_path_factory):
    options = LoadOptions(
        model_id=str(tiny_checkpoint), dtype="float32", device_map=SPREAD,
        offload_folder=str(tmp_path_factory.mktemp("offloaded")),
    )
    return load_model(options)


def test_the_spread_model_really_keeps_blocks_elsewhere(spread_model) -> None:
    assert spread_model.model.hf_device_map["model.gated_cross_attn_layers.1"] == "disk"
    block = spread_model.model.model.gated_cross_attn_layers[1]
    assert next(block.parameters()).device.type == "meta"  # its weights come in only while it runs


async def test_a_spread_model_answers_photos_as_the_model_in_one_place(tiny_checkpoint, spread_model) -> None:
    whole = load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))
    conversations = [
        _photo_question((200, 10, 10), "sha-red", "What is in this photo?"),
        _photo_question((10, 10, 200), "sha-blue", "Describe it"),
        Conversation(turns=(Turn("user", (TextPart("Hello, how are you today?"),)),)),
    ]
    expected = await _answers(whole, conversations)
    assert await _answers(spread_model, conversations) == expected
    assert len(set(expected[1:])) == 3  # the images really change the answers
