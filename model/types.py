"""Small value objects at the seam between the model service and its callers (the bot, tests, bench)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Union

from PIL import Image

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    """Literal text. Whatever it contains stays literal text in the prompt."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """One image; `key` (e.g. the sha256 of its stored bytes) lets the service reuse its vision features."""

    image: Image.Image
    key: str | None = None


Part = Union[TextPart, ImagePart]


@dataclass(frozen=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Preamble:
    """What comes before the conversation: an instruction and few-shot example turns (may hold images)."""

    name: str
    text: str
    examples: tuple[Turn, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Conversation:
    """Ordered turns, oldest first; the last one is the user turn the model should answer."""

    turns: tuple[Turn, ...]
    preamble: Preamble | None = None


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 0.4
    top_p: float = 0.8
    repetition_penalty: float = 1.0
    seed: int | None = None
    # For benchmarks: always generate exactly max_new_tokens, ignoring end-of-utterance and stop strings.
    ignore_stop: bool = False


class FinishReason(str, Enum):
    END_OF_UTTERANCE = "end_of_utterance"
    LENGTH = "length"
    STOP_STRING = "stop_string"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class TextDelta:
    """A piece of newly generated text, safe to show (never part of a stop string)."""

    text: str


@dataclass(frozen=True)
class GenerationResult:
    """The last event of a stream: the whole reply and how it went."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None
    total_s: float
    dropped_turns: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Busy:
    """The model server is overloaded: the request waits `retry_in_s` seconds, then tries again.

    Only a remote backend (a text-generation-inference server) sends it, before any text; a caller may
    tell the person that the answer is delayed, or ignore it."""

    attempt: int
    retry_in_s: float


StreamEvent = Union[TextDelta, GenerationResult, Busy]


@dataclass(frozen=True)
class BuiltPrompt:
    """A conversation rendered in the canonical IDEFICS format and fitted to the context window.

    `input_ids` (BOS first) and `images` (in prompt order) are what generation needs; `items` is the same
    prompt as the list `IdeficsProcessor(text=items)` takes, and gives exactly these ids.
    """

    items: tuple
    input_ids: tuple[int, ...]
    images: tuple[Image.Image, ...]
    image_keys: tuple[str | None, ...]
    dropped_turns: int
    dropped_images: int = 0
