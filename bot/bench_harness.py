"""What `python -m bot.bench` measures with: the real bot on the Bot API stand-in, and a timed model.

`running_bot` starts the whole application (`bot.app.build_application`, polling the stand-in, a
fresh SQLite file) with the model backend a factory gives, as `idefics-bot try` and the tests do.
`TimedBackend` wraps that backend and notes, for every answer, the conversation and settings it was
asked, when its stream began and when its last event (the finished result: the last token is known)
arrived, in `time.time()` seconds, the clock the stand-in stamps every Bot API call with.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image
from telegram.ext import Application

from bot.app import build_application
from bot.lifecycle import serving
from bot.runtime import runtime_of
from bot.settings import Settings
from model.backend import BackendHealth, ModelBackend
from model.types import (Conversation, GenerationParams, GenerationResult, ImagePart, Part, StreamEvent,
                         TextDelta)
from standin.telegram import BotApiStandIn, FloodLimits


@dataclass
class TimedAnswer:
    """One answer as the model backend saw it."""

    conversation: Conversation
    params: GenerationParams
    started_at: float
    first_text_at: float | None = None
    last_token_at: float | None = None


class TimedBackend:
    """A model backend that notes when each answer started and when its last token was known."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner = inner
        self.answers: list[TimedAnswer] = []

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def health(self) -> BackendHealth:
        return await self.inner.health()

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        return await self.inner.score_options(conversation, options)

    async def stream(
        self, conversation: Conversation, params: GenerationParams
    ) -> AsyncIterator[StreamEvent]:
        answer = TimedAnswer(conversation, params, time.time())
        self.answers.append(answer)
        async with contextlib.aclosing(self.inner.stream(conversation, params)) as events:
            async for event in events:
                if isinstance(event, TextDelta) and answer.first_text_at is None:
                    answer.first_text_at = time.time()
                elif isinstance(event, GenerationResult):
                    answer.last_token_at = time.time()
                yield event


async def bare_generation_s(
    backend: ModelBackend, conversation: Conversation, params: GenerationParams
) -> float:
    """Seconds the backend alone takes to write the whole answer (the yardstick), from the model's
    caches as the bot found them: the conversation's images get keys never seen, so their features
    and every prompt token after them are computed again, as they were for the bot; what every chat
    shares (the mode's preamble) stays cached for both."""
    unseen = _with_unseen_images(conversation)
    started = time.perf_counter()
    async with contextlib.aclosing(backend.stream(unseen, params)) as events:
        async for _ in events:
            pass
    return time.perf_counter() - started


def _with_unseen_images(conversation: Conversation) -> Conversation:
    """The same conversation, its images keyed afresh (their pixels unchanged)."""
    stamp = time.monotonic_ns()

    def unseen(part: Part) -> Part:
        if isinstance(part, ImagePart) and part.key is not None:
            return replace(part, key=f"{part.key}:yardstick:{stamp}")
        return part

    turns = tuple(replace(turn, parts=tuple(unseen(part) for part in turn.parts)) for turn in conversation.turns)
    return replace(conversation, turns=turns)


@contextlib.asynccontextmanager
async def running_bot(
    workdir: Path,
    backend_factory: Callable[[Settings], Awaitable[ModelBackend]],
    *,
    flood_limits: FloodLimits | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[BotApiStandIn, Application]]:
    """The stand-in and the real application answering on it, stopped on the way out."""
    standin = BotApiStandIn(flood_limits=flood_limits)
    await standin.start()
    try:
        database = workdir / f"bench-{time.monotonic_ns()}.sqlite3"
        values: dict[str, Any] = dict(
            telegram_bot_token=standin.token, telegram_api_url=standin.api_root,
            database_url=f"sqlite+aiosqlite:///{database}", conversation_retention_days=0,
            log_level="WARNING",
        )
        application = build_application(
            Settings(_env_file=None, **{**values, **settings}), model_service_factory=backend_factory
        )
        async with serving(application, poll_interval=0, timeout=1):
            yield standin, application
    finally:
        await standin.stop()
    if standin.internal_errors:
        raise RuntimeError("the Bot API stand-in failed:\n" + "\n".join(standin.internal_errors))


async def settled(application: Application, timeout_s: float = 120.0) -> None:
    """Until no answer is running or queued (each records its turn before it ends)."""
    async with asyncio.timeout(timeout_s):
        while runtime_of(application).answers.pending_count():
            await asyncio.sleep(0.005)


def photo(index: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A JPEG of its own colour for each index, as a phone would send it."""
    colour = ((index * 67) % 256, (index * 131 + 40) % 256, (index * 29 + 90) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
