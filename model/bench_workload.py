"""What the benchmark asks the service: conversations of a chosen shape, and timed streams of their answers.

Every conversation is different (its `seed` is in its first words and its pictures), so no round is helped
by what an earlier round left in a cache, unless the scenario means it to be (a follow-up of the same
conversation, the same preamble). Times are taken from outside, as a caller of `service.stream()` sees
them: when the stream was opened, and when each piece of text arrived.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from model.bench_stats import gaps
from model.prompt import PromptBuilder
from model.types import (
    Conversation,
    GenerationParams,
    GenerationResult,
    ImagePart,
    Preamble,
    TextDelta,
    TextPart,
    Turn,
)

QUESTIONS = (
    "What is in this picture?",
    "Describe the colours you see.",
    "Is there a person in the image?",
    "Tell me a short story about this photo.",
    "How many shapes are there?",
    "What colour is the square?",
    "Can you describe the image in one sentence?",
    "What is the weather like here?",
)
FOLLOW_UP = "And how does this one compare with the first picture?"
_FILLER = (
    "the red circle sits near a blue square while a small green triangle waits on the left side of the "
    "picture and the light comes from a window behind them so every shape has a soft grey shadow"
).split()


def picture(seed: int) -> ImagePart:
    """A small picture of its own for each seed (colours and a shape), with a key the caches can use."""
    background = ((37 * seed) % 256, (91 * seed + 40) % 256, (151 * seed + 80) % 256)
    image = Image.new("RGB", (64, 48), background)
    corner = (seed * 7) % 40
    ImageDraw.Draw(image).rectangle((corner, 4, corner + 20, 30), fill=(255 - background[0], 200, 30))
    return ImagePart(image, key=f"bench-{seed}")


def first_message(seed: int, images: int = 1, preamble: Preamble | None = None) -> Conversation:
    """A one-turn conversation: `images` pictures, then a question that names its seed."""
    parts = [picture(seed * 16 + n) for n in range(images)]
    question = f"Picture set {seed}. {QUESTIONS[seed % len(QUESTIONS)]}"
    return Conversation(turns=(Turn("user", (*parts, TextPart(question))),), preamble=preamble)


def long_history(builder: PromptBuilder, seed: int, tokens: int, images: int) -> Conversation:
    """A conversation ending with a user turn whose prompt is about `tokens` long, holding `images` pictures.

    One picture per user turn, each answered at length: the answers are as long as that size needs.
    """
    words, length = 0, _length(builder, _history(seed, images, 0))
    per_word = max(0.1, (_length(builder, _history(seed, images, _PROBE_WORDS)) - length) / _PROBE_WORDS)
    for _ in range(3):  # words differ in cost: aim, then correct
        words = max(0, words + round((tokens - length) / per_word))
        length = _length(builder, _history(seed, images, words))
    return _history(seed, images, words)


_PROBE_WORDS = 200


def _length(builder: PromptBuilder, conversation: Conversation) -> int:
    return len(builder.build(conversation, max_new_tokens=1).input_ids)


def _history(seed: int, images: int, answer_words: int) -> Conversation:
    turns: list[Turn] = []
    for n in range(max(1, images)):
        parts = (picture(seed * 16 + n),) if images else ()
        turns.append(Turn("user", (*parts, TextPart(f"Chat {seed}, picture {n + 1}. {QUESTIONS[n % 8]}"))))
        words = range(answer_words // max(1, images))  # the answers share the words out
        answer = " ".join(_FILLER[(seed + n + i) % len(_FILLER)] for i in words) or "Yes"
        turns.append(Turn("assistant", (TextPart(answer.capitalize() + "."),)))
    turns.append(Turn("user", (TextPart(f"Chat {seed}: what do all these pictures share?"),)))
    return Conversation(turns=tuple(turns))


def with_answer(conversation: Conversation, answer: str, question: str = FOLLOW_UP) -> Conversation:
    """The conversation's next turn: its answer kept as the assistant's, then a new question."""
    turns = conversation.turns + (
        Turn("assistant", (TextPart(answer.strip() or "Yes."),)),
        Turn("user", (TextPart(question),)),
    )
    return Conversation(turns=turns, preamble=conversation.preamble)


def images_only(conversation: Conversation) -> Conversation:
    """A short conversation holding the same pictures (their vision features then cached), little text."""
    parts = [part for turn in conversation.turns for part in turn.parts if isinstance(part, ImagePart)]
    return Conversation(turns=(Turn("user", (*parts, TextPart("Which is brightest?"))),))


@dataclass
class TimedStream:
    """One request as its caller saw it: when it was sent, when each piece of text came, and its result."""

    started: float
    arrivals: list[float] = field(default_factory=list)
    result: GenerationResult | None = None

    @property
    def ttft_s(self) -> float:
        """Seconds from opening the stream to its first text (or its end, had it none)."""
        if self.arrivals:
            return self.arrivals[0] - self.started
        if self.result is None:
            raise ValueError("the stream gave neither text nor a result")
        return self.result.total_s

    @property
    def tokens(self) -> int:
        return 0 if self.result is None else self.result.completion_tokens

    @property
    def step_s(self) -> float:
        """The row's decode step: its median gap when each token came as its own piece of text (robust
        to the one step a late joiner's prefill may hold up), else its mean time per token after the first.
        """
        if len(self.arrivals) == self.tokens and self.tokens >= 3:
            return statistics.median(gaps(self.arrivals))
        if self.result is None or self.tokens < 2 or self.result.time_to_first_token_s is None:
            raise ValueError("a decode step needs a result with at least two tokens")
        return (self.result.total_s - self.result.time_to_first_token_s) / (self.tokens - 1)


async def timed(service, conversation: Conversation, params: GenerationParams) -> TimedStream:
    """Stream one answer to its end, noting when each `TextDelta` arrives."""
    run = TimedStream(started=time.perf_counter())
    async for event in service.stream(conversation, params):
        if isinstance(event, TextDelta):
            run.arrivals.append(time.perf_counter())
        elif isinstance(event, GenerationResult):
            run.result = event
    if run.result is None:
        raise RuntimeError("the stream ended without a result")
    return run


def exactly(tokens: int) -> GenerationParams:
    """Parameters that make a greedy answer exactly `tokens` long (stops ignored), so runs do equal work."""
    return GenerationParams(max_new_tokens=tokens, ignore_stop=True)


def built(builder: PromptBuilder, conversations: Sequence[Conversation], new_tokens: int):
    """The prompts the service would build for `conversations` (for the padded `generate` baseline)."""
    return [builder.build(conversation, new_tokens) for conversation in conversations]
