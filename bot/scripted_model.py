"""An instant (or evenly paced) model that answers by script, for bot-level timing: the benchmark
(`bot.bench`) and the timing tests measure what the bot adds, so the model's own time must be known.

`ScriptedModel` is a `ModelBackend`: it streams `TextDelta`s and a `GenerationResult` like the real
service, but writes "<echo of the question> w1 w2 …" (so every answer names its question, and order
can be checked), a token every `token_delay_s` (0: all at once). It notes when each answer started and
when its last token was known (`ScriptedAnswer`), in `time.time()` seconds, the clock the Bot API
stand-in stamps calls with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from model.backend import BackendHealth
from model.types import (Conversation, FinishReason, GenerationParams, GenerationResult, StreamEvent,
                         TextDelta, TextPart)


@dataclass
class ScriptedAnswer:
    """One answer the scripted model wrote: its question, its text, and when."""

    question: str
    text: str
    started_at: float
    first_token_at: float = 0.0
    last_token_at: float = 0.0


class ScriptedModel:
    """A model backend that echoes the question and adds `tokens` words, paced (see module doc)."""

    def __init__(
        self, *, tokens: int = 8, token_delay_s: float = 0.0, first_token_delay_s: float = 0.0
    ) -> None:
        self.tokens = tokens
        self.token_delay_s = token_delay_s
        self.first_token_delay_s = first_token_delay_s
        self.answers: list[ScriptedAnswer] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> BackendHealth:
        return BackendHealth(ready=True)

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        return [-float(index) for index, _ in enumerate(options)]  # the first option wins

    async def stream(
        self, conversation: Conversation, params: GenerationParams
    ) -> AsyncIterator[StreamEvent]:
        question = _question(conversation)
        answer = ScriptedAnswer(question, "", time.time())
        self.answers.append(answer)
        count = min(self.tokens, params.max_new_tokens)
        pieces = [f"echo: {question}"] + [f" w{index}" for index in range(1, count)]
        if self.first_token_delay_s:
            await asyncio.sleep(self.first_token_delay_s)
        for index, piece in enumerate(pieces):
            if index and self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            answer.text += piece
            answer.last_token_at = time.time()
            answer.first_token_at = answer.first_token_at or answer.last_token_at
            yield TextDelta(piece)
        total = answer.last_token_at - answer.started_at
        yield GenerationResult(answer.text, FinishReason.LENGTH, 1, count, None, total)


def _question(conversation: Conversation) -> str:
    """The text of the last user turn (the question being answered)."""
    last = conversation.turns[-1]
    return " ".join(part.text for part in last.parts if isinstance(part, TextPart)).strip()
