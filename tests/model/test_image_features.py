"""Reusing vision-encoder outputs by image key gives the same replies as encoding the pixels every time."""

from __future__ import annotations

import asyncio

import pytest
import torch
from PIL import Image

from model.image_features import ImageFeatureCache
from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, TextPart, Turn

PARAMS = GenerationParams(max_new_tokens=16)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


def _chat(rgb: tuple[int, int, int], key: str, question: str) -> Conversation:
    image = ImagePart(Image.new("RGB", (40, 40), rgb), key=key)
    return Conversation(turns=(Turn("user", (image, TextPart(question))),))


def _follow_up(first: Conversation, reply: str, rgb, key: str) -> Conversation:
    second = Turn("user", (ImagePart(Image.new("RGB", (40, 40), rgb), key=key), TextPart("And this?")))
    return Conversation(turns=(*first.turns, Turn("assistant", (TextPart(reply),)), second))


async def _texts(service: ModelService, conversations: list[Conversation]) -> list[str]:
    async def one(conversation: Conversation) -> str:
        async for event in service.stream(conversation, PARAMS):
            if isinstance(event, GenerationResult):
                return event.text
        raise AssertionError("no result")

    return list(await asyncio.gather(*(one(c) for c in conversations)))


async def _run(loaded, image_cache_size: int, rounds: list[list[Conversation]]):
    service = ModelService(loaded, image_cache_size=image_cache_size, batch_window_s=0.2)
    await service.start()
    try:
        return [await _texts(service, conversations) for conversations in rounds], service.stats
    finally:
        await service.stop()


async def test_cached_encoder_outputs_give_the_same_replies_as_pixels(loaded) -> None:
    red = _chat((255, 0, 0), "sha-red", "What is this?")
    blue = _chat((0, 0, 255), "sha-blue", "Describe it")
    rounds = [
        [red, blue],
        [_follow_up(red, "A red square.", (0, 255, 0), "sha-green"), blue, red],
    ]
    uncached, _ = await _run(loaded, 0, rounds)
    cached, stats = await _run(loaded, 8, rounds)
    assert cached == uncached
    assert uncached[0][0] != uncached[0][1]  # different images really give different replies
    # round 1 encodes red and blue; round 2 only the new green one and takes red, blue, red from the cache
    assert (stats.image_cache_misses, stats.image_cache_hits) == (3, 3)


def test_the_cache_forgets_the_least_recently_used_image() -> None:
    cache = ImageFeatureCache(capacity=2)
    for key in ("a", "b"):
        cache.put(key, torch.full((2, 3), float(ord(key))))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("c", torch.zeros(2, 3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2
    cache.put(None, torch.zeros(2, 3))  # images without a key are never cached
    assert len(cache) == 2
