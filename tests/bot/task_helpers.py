"""Helpers for the image-task tests: a recording model service that also keeps each request's
generation params, raw results and option scores, and small readers of the stored conversation."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from model.types import Conversation, GenerationParams, GenerationResult, ImagePart
from tests.bot.conftest import RecordingModelService, answers_settled, recording_factory, runtime

BOT = "@idefics_test_bot"


class TaskRecordingService(RecordingModelService):
    """The real service over the tiny checkpoint, remembering params, raw results and scores."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params: list[GenerationParams] = []
        self.results: list[GenerationResult] = []
        self.scored: list[tuple[Conversation, tuple[str, ...], list[float]]] = []

    async def stream(self, conversation: Conversation, params: GenerationParams):
        self.params.append(params)
        async with contextlib.aclosing(super().stream(conversation, params)) as events:
            async for event in events:
                if isinstance(event, GenerationResult):
                    self.results.append(event)
                yield event

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        scores = await super().score_options(conversation, options)
        self.scored.append((conversation, tuple(options), scores))
        return scores


def task_factory(delay_s: float = 0.0) -> tuple[Callable, list[TaskRecordingService]]:
    return recording_factory(delay_s, TaskRecordingService)


async def history(application, chat_id: int, user_id: int):
    """The user's current conversation in this chat, once every queued answer is recorded."""
    await answers_settled(application)
    store = runtime(application).store
    conversation = await store.active_conversation(chat_id, user_id)
    return await store.history(conversation.id)


def images_of(turn) -> list:
    return [part.image for part in turn.parts if isinstance(part, ImagePart)]


def dominant_colour(image) -> str:
    """ "red", "green" or "blue": the strongest channel in the middle of a one-colour test image."""
    pixel = image.getpixel((image.width // 2, image.height // 2))
    return ("red", "green", "blue")[max(range(3), key=lambda channel: pixel[channel])]


def stored_colour(stored_image) -> str:
    """The dominant colour of an image as the store keeps it."""
    with Image.open(io.BytesIO(stored_image.data)) as opened:
        return dominant_colour(opened.convert("RGB"))
