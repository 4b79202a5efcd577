"""Helpers the TGI tests share: loading a checkpoint, one-turn conversations, reading a stream."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from model.loaded import LoadedModel, LoadOptions
from model.loading import load_model
from model.tgi_retry import RetryPolicy
from model.types import Conversation, GenerationResult, ImagePart, TextDelta, TextPart, Turn
from standin.tgi import Limits

FAST_RETRY = RetryPolicy(first_wait_s=0.05, factor=2.0, max_wait_s=0.2, max_waits=3)
SMALL_LIMITS = Limits(max_input_tokens=255, max_total_tokens=256)


def load(directory: Path) -> LoadedModel:
    return load_model(LoadOptions(model_id=str(directory), dtype="float32", device_map=None))


def ask(text: str, *images: Image.Image) -> Conversation:
    parts = (*(ImagePart(image) for image in images), TextPart(text))
    return Conversation(turns=(Turn(role="user", parts=parts),))


def colour(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (40, 32), rgb)


async def collect(backend, conversation: Conversation, params) -> tuple[list, GenerationResult]:
    """Every event of one stream, and its final result (checked to be the last event)."""
    events = [event async for event in backend.stream(conversation, params)]
    assert events and isinstance(events[-1], GenerationResult)
    assert not any(isinstance(event, GenerationResult) for event in events[:-1])
    return events, events[-1]


def deltas(events) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))

