"""Turn a conversation into the canonical IDEFICS prompt, fitted to the context window, with text kept literal.

The format (see shared/IDEFICS.md) is, turn by turn, ``"\\nUser:"`` + the turn's images + its text +
``<end_of_utterance>``, ``"\\nAssistant: " + reply + "<end_of_utterance>"``, ending with ``"\\nAssistant:"``;
an optional preamble (instruction and example turns) comes first.

Text from users (and stored replies) is made literal before it goes in:
- strings that the tokenizer would read as added tokens (``<image>``, ``<end_of_utterance>``, ``</s>``, ...,
  in any letter case) get an invisible WORD JOINER (U+2060) after their first character;
- it is NFKC-normalised, every kind of line break becomes ``"\\n"``, and a line that starts with a role
  label (``User:``, ``  assistant :``) is joined to the line before with a space, so text cannot open a
  turn;
- a string item that the processor would take for an image URL to fetch gets a WORD JOINER in front;
- ``![](`` gets a WORD JOINER after its ``!``: a text-generation-inference server reads ``![](...)`` in its
  input as an image to fetch or decode, so text must never spell it.
The ids are then computed in the served format (model/tokenization.py: each text segment between special
tokens tokenized on its own, as the model was trained), from the text `IdeficsProcessor` makes of the items,
and checked: the number of special tokens must be what the template put there, or the prompt is refused.

Fitting: the prompt may use ``max_positions - max_new_tokens`` tokens. Whole oldest turns are dropped
first, never the preamble or the newest user turn, and never leaving an assistant turn first; once
some must go, the prompt starts at a user turn whose number is a multiple of `TRIM_STEP_TURNS`, so
that it keeps the same start (and its KV stays reusable, model/prefix_cache.py) for several turns. Images are
capped at `max_images` (preamble images do not count) the same way: whole oldest turns holding images are
dropped, so that every remaining question still sits after the image it was about (IDEFICS text attends
to the most recent image before it; removing only an old image would make its question look at another
one). If the newest user turn alone has too many images, its oldest images are left out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from transformers.models.idefics.processing_idefics import is_url

from model.errors import ModelError, PromptTooLong
from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN
from model.tokenization import SegmentEncoder
from model.types import BuiltPrompt, Conversation, ImagePart, Preamble, TextPart, Turn

WORD_JOINER = "\u2060"
# Trimming drops old turns in steps of this many user turns (see `_on_the_trim_grid`).
TRIM_STEP_TURNS = 4
MARKDOWN_IMAGE = "![]("
# Whitespace and invisible format characters that may hide in front of a role label; U+2581 ("▁") is
# SentencePiece's space, so to the model it is whitespace too.
_INVISIBLE = "\\s\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2581\ufeff"
_ROLE_LABEL = re.compile(
    f"^[{_INVISIBLE}]*(user|assistant)[{_INVISIBLE}]*[:\u02f8\u2236\ua789\ufe13\ufe55\uff1a]", re.IGNORECASE
)


@dataclass(frozen=True)
class _Rendered:
    items: tuple
    input_ids: tuple[int, ...]
    images: tuple[ImagePart, ...]


class PromptBuilder:
    """Builds `BuiltPrompt`s for one model: needs `.processor` and `.max_positions` of a LoadedModel."""

    def __init__(self, loaded, max_images: int) -> None:
        if max_images < 1:
            raise ValueError("max_images must be at least 1")
        self._processor = loaded.processor
        self._tokenizer = loaded.processor.tokenizer
        self._max_positions = int(loaded.max_positions)
        self._max_images = max_images
        guarded = {token.content for token in self._tokenizer.added_tokens_decoder.values()}
        guarded |= set(self._tokenizer.all_special_tokens)
        guarded = sorted((t for t in guarded if len(t) > 1), key=len, reverse=True)
        self._guarded_pattern = re.compile("|".join(map(re.escape, guarded)), re.IGNORECASE)
        self._guarded_ids = frozenset(self._tokenizer.convert_tokens_to_ids(guarded))
        self._eou_guarded = END_OF_UTTERANCE in guarded
        self._encoder = SegmentEncoder(self._tokenizer)

    def build(self, conversation: Conversation, max_new_tokens: int) -> BuiltPrompt:
        """Render, trim to fit `max_positions - max_new_tokens`, and cap images; see the module docstring."""
        turns = conversation.turns
        if not turns or turns[-1].role != "user":
            raise ValueError("a conversation must end with the user turn to answer")
        budget = self._max_positions - max_new_tokens
        newest_images = _image_count(turns[-1:])
        start = self._image_cap_start(turns)
        newest = _keep_last_images(turns[-1], self._max_images) if start == len(turns) - 1 else turns[-1]
        candidates = [i for i in range(start, len(turns) - 1) if turns[i].role == "user"]
        candidates.append(len(turns) - 1)
        rendered, index = self._first_fitting(conversation.preamble, turns, newest, candidates, budget)
        stepped = _on_the_trim_grid(turns, candidates, index)
        if stepped != index:
            rendered, index = self._render(conversation.preamble, turns[candidates[stepped] : -1] + (newest,)), stepped
        kept_images = _image_count(turns[candidates[index] : -1]) + _image_count((newest,))
        return BuiltPrompt(
            items=rendered.items,
            input_ids=rendered.input_ids,
            images=tuple(part.image for part in rendered.images),
            image_keys=tuple(part.key for part in rendered.images),
            dropped_turns=candidates[index],
            dropped_images=_image_count(turns[:-1]) + newest_images - kept_images,
        )

    def literal_text(self, text: str) -> str:
        """`text` as it goes into the prompt: it cannot make special tokens or open a turn."""
        text = unicodedata.normalize("NFKC", text)
        lines = text.splitlines()
        joined = lines[0] if lines else ""
        for line in lines[1:]:
            joined += " " + line.lstrip() if _ROLE_LABEL.match(line) else "\n" + line
        joined = joined.replace(MARKDOWN_IMAGE, MARKDOWN_IMAGE[0] + WORD_JOINER + MARKDOWN_IMAGE[1:])
        return self._guarded_pattern.sub(lambda m: m[0][0] + WORD_JOINER + m[0][1:], joined).strip()

    def _image_cap_start(self, turns: tuple[Turn, ...]) -> int:
        """The first turn to keep so that at most `max_images` conversation images remain."""
        for start in range(len(turns)):
            if turns[start].role == "user" and _image_count(turns[start:]) <= self._max_images:
                return start
        return len(turns) - 1

    def _first_fitting(self, preamble, turns, newest, candidates, budget) -> tuple[_Rendered, int]:
        """Binary search for the earliest start turn whose prompt fits `budget` tokens."""
        low, high = 0, len(candidates) - 1
        best = self._render(preamble, turns[candidates[high] : -1] + (newest,))
        if len(best.input_ids) > budget:
            raise PromptTooLong(
                "Your message is too long for me to read in one go: with its images it takes about "
                f"{len(best.input_ids)} tokens, and I can read about {max(budget, 0)} while leaving room "
                "for my answer. Please shorten it or split it into several messages."
            )
        found = high
        while low < high:
            middle = (low + high) // 2
            rendered = self._render(preamble, turns[candidates[middle] : -1] + (newest,))
            if len(rendered.input_ids) <= budget:
                best, found, high = rendered, middle, middle
            else:
                low = middle + 1
        return best, found

    def _render(self, preamble: Preamble | None, turns: tuple[Turn, ...]) -> _Rendered:
        items: list = []
        if preamble is not None and preamble.text.strip():
            items.append(self.literal_text(preamble.text))
        for turn in (preamble.examples if preamble else ()) + turns:
            items.extend(self._render_turn(turn, first=not items))
        items.append("\nAssistant:")
        items = [_not_a_url(item) if isinstance(item, str) else item for item in items]
        all_turns = len(turns) + len(preamble.examples if preamble else ())
        input_ids = self._encode(items, end_of_utterances=all_turns)
        images = tuple(item for item in items if isinstance(item, ImagePart))
        return _Rendered(
            items=tuple(item.image if isinstance(item, ImagePart) else item for item in items),
            input_ids=input_ids,
            images=images,
        )

    def _render_turn(self, turn: Turn, first: bool) -> list:
        text = "\n".join(self.literal_text(p.text) for p in turn.parts if isinstance(p, TextPart))
        text = text.strip()
        if turn.role == "assistant":  # replies are text; images in them are not part of the format
            return [("" if first else "\n") + "Assistant:" + (" " + text if text else "") + END_OF_UTTERANCE]
        label = "User:" if first else "\nUser:"
        images = [part for part in turn.parts if isinstance(part, ImagePart)]
        if not images:
            return [label + (" " + text if text else "") + END_OF_UTTERANCE]
        return [label, *images, text + END_OF_UTTERANCE]

    def _encode(self, items: list, end_of_utterances: int) -> tuple[int, ...]:
        """Served-format ids for `items` (see model/tokenization.py), checked for smuggled special tokens.

        The text is what IdeficsProcessor makes of the items; with the served-format tokenizer the
        processor gives the same ids.
        """
        full_text = self._tokenizer.bos_token
        expected_specials = 1 + (end_of_utterances if self._eou_guarded else 0)
        last_was_image = False
        for item in items:
            if isinstance(item, str):
                full_text += item.strip(" ")
                last_was_image = False
            else:  # consecutive images share the <fake_token_around_image> between them
                opening = "" if last_was_image else FAKE_IMAGE_TOKEN
                full_text += opening + IMAGE_TOKEN + FAKE_IMAGE_TOKEN
                expected_specials += 2 if last_was_image else 3
                last_was_image = True
        input_ids = self._encoder.encode(full_text)
        if sum(1 for token_id in input_ids if token_id in self._guarded_ids) != expected_specials:
            raise ModelError("The prompt could not be made safe: text produced special tokens.")
        return tuple(input_ids)


def _on_the_trim_grid(turns: tuple[Turn, ...], candidates: list[int], index: int) -> int:
    """Once turns must go, start at a user turn whose number is a multiple of TRIM_STEP_TURNS.

    The conversation's next prompts then start at the same turn until it grows by that many more
    exchanges, so their KV stays in the prefix cache; the start moves by several turns at once instead
    of one turn every turn (which would change every prompt's prefix)."""
    if candidates[index] == 0:
        return index
    numbers = {position: n for n, position in enumerate(i for i, t in enumerate(turns) if t.role == "user")}
    for later in range(index, len(candidates) - 1):  # never the newest turn alone because of the grid
        if numbers[candidates[later]] % TRIM_STEP_TURNS == 0:
            return later
    return index


def _not_a_url(item: str) -> str:
    """The processor fetches a string item that parses as a URL; keep text from ever being one."""
    return WORD_JOINER + item if is_url(item.strip(" ")) else item


def _image_count(turns) -> int:
    return sum(1 for turn in turns for part in turn.parts if isinstance(part, ImagePart))


def _keep_last_images(turn: Turn, max_images: int) -> Turn:
    images = [i for i, part in enumerate(turn.parts) if isinstance(part, ImagePart)]
    left_out = set(images[: max(len(images) - max_images, 0)])
    return Turn(role=turn.role, parts=tuple(p for i, p in enumerate(turn.parts) if i not in left_out))
