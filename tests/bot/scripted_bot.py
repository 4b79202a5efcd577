"""`python -m tests.bot.scripted_bot`: `idefics-bot run`, the real bot in every part but the model,
which is scripted, for tests that run several bot processes at once on a 2-core machine.

Everything the bot does is real (settings from the environment, PTB, webhooks, the inbox on the
database, previews, delivery); only the model is a script that answers at once and says what it
was asked: "answer to «question» (N images)". That lets a test check which question each answer
belongs to. It imports neither torch nor transformers, so a process starts in seconds. The guide
allows a scripted model for bot-level timing tests; the real tiny checkpoint runs in several
processes in tests/bot/test_several_processes.py too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence

from bot.app import ALLOWED_UPDATES, build_application
from bot.logging_setup import configure_logging
from bot.settings import Settings
from bot.webhooks import run_until_stopped
from model.backend import BackendHealth
from model.types import (
    Conversation,
    FinishReason,
    GenerationParams,
    GenerationResult,
    ImagePart,
    StreamEvent,
    TextDelta,
    TextPart,
)

STEP_S = 0.05  # between the words of an answer: long enough for answers to overlap


def scripted_answer(conversation: Conversation) -> str:
    """What the script says to the conversation's last user turn."""
    parts = conversation.turns[-1].parts
    question = " ".join(part.text.strip() for part in parts if isinstance(part, TextPart)).strip()
    images = sum(isinstance(part, ImagePart) for part in parts)
    return f"answer to «{question}» ({images} images)"


class ScriptedModel:
    """A ModelBackend (model/backend.py) that answers `scripted_answer`, word by word."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def health(self) -> BackendHealth:
        return BackendHealth(ready=True)

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        return [-float(index) for index, _ in enumerate(options)]

    async def stream(
        self, conversation: Conversation, params: GenerationParams
    ) -> AsyncIterator[StreamEvent]:
        text = scripted_answer(conversation)
        words = text.split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(STEP_S)
            yield TextDelta(word if index == 0 else " " + word)
        yield GenerationResult(
            text=text, finish_reason=FinishReason.END_OF_UTTERANCE, prompt_tokens=1,
            completion_tokens=len(words), time_to_first_token_s=STEP_S, total_s=STEP_S * len(words),
        )


async def scripted_model(settings: Settings) -> ScriptedModel:
    return ScriptedModel()


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, [settings.telegram_bot_token.get_secret_value()])
    application = build_application(settings, model_service_factory=scripted_model)
    run_until_stopped(application, ALLOWED_UPDATES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
