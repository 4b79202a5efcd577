"""Turning one request's generated token ids into text that is safe to show, and deciding when it is done.

Two problems live here, both per row of a batch:
- Tokens do not map to whole characters (a byte-level BPE may split one emoji over three tokens), and
  sentencepiece drops the leading space of a slice decoded on its own. `IncrementalDecoder` re-decodes a
  short window and only releases text once it decodes cleanly.
- The model sometimes starts a new turn (`"\\nUser:"`) instead of writing `<end_of_utterance>`. That text,
  and any beginning of it at the end of what was generated so far, must never reach a reader, so
  `StopStringHoldback` holds back every suffix that could still grow into a stop string, and it holds back
  surrounding whitespace too, so the deltas it releases concatenate to exactly the final, stripped reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from model.loaded import END_OF_UTTERANCE
from model.types import FinishReason

NEW_USER_TURN = "\nUser:"
# The literal text of the end-of-utterance token counts too: a model that spells it out piece by piece
# (possible with a small tokenizer) has still ended its turn.
DEFAULT_STOP_STRINGS: tuple[str, ...] = (NEW_USER_TURN, END_OF_UTTERANCE)
REPLACEMENT_CHARACTER = "\ufffd"


class IncrementalDecoder:
    """Decodes a growing list of token ids into text, releasing only characters that are complete."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the new text it completes (often "", e.g. mid-way through a character)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(REPLACEMENT_CHARACTER):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def flush(self) -> str:
        """No more tokens will come: return whatever text is still pending, complete or not."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@dataclass
class StopStringHoldback:
    """Accumulates decoded text and releases the part that can no longer turn out to be a stop string."""

    stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS
    text: str = ""
    released_until: int = 0
    shown: str = ""
    stop_index: int | None = None
    _longest_stop: int = field(init=False)

    def __post_init__(self) -> None:
        self._longest_stop = max((len(s) for s in self.stop_strings), default=0)

    @property
    def stopped(self) -> bool:
        return self.stop_index is not None

    def push(self, new_text: str) -> str:
        """Add freshly decoded text; return the delta that is now safe to show (may be "")."""
        if self.stopped or not new_text:
            return ""
        search_from = max(0, len(self.text) - self._longest_stop + 1)
        self.text += new_text
        self.stop_index = self._find_stop(search_from)
        if self.stopped:
            return self._release(self.text[: self.stop_index])
        return self._release(self.text[: len(self.text) - self._partial_stop_length()])

    def finish(self) -> str:
        """No more text will come: release whatever is left of the reply (minus any stop string)."""
        end = self.stop_index if self.stopped else len(self.text)
        return self._release(self.text[:end])

    @property
    def reply(self) -> str:
        """The reply as it stands: cut at the stop string, without surrounding whitespace."""
        end = self.stop_index if self.stopped else len(self.text)
        return self.text[:end].strip()

    def _find_stop(self, search_from: int) -> int | None:
        found = [i for s in self.stop_strings if (i := self.text.find(s, search_from)) >= 0]
        return min(found) if found else None

    def _partial_stop_length(self) -> int:
        """Length of the longest suffix of the text that is a proper prefix of some stop string."""
        for length in range(min(self._longest_stop - 1, len(self.text)), 0, -1):
            suffix = self.text[-length:]
            if any(s.startswith(suffix) for s in self.stop_strings):
                return length
        return 0

    def _release(self, visible: str) -> str:
        # Leading whitespace is never shown and trailing whitespace waits until something follows it,
        # so that the released deltas add up to exactly `reply`.
        start = max(self.released_until, len(visible) - len(visible.lstrip()))
        end = len(visible.rstrip())
        if end <= start:
            return ""
        self.released_until = end
        self.shown += visible[start:end]
        return visible[start:end]


class RowStopper:
    """One request's view of a batch: its tokens, its visible text and why (if) it has finished."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        stop_token_ids: Sequence[int],
        max_new_tokens: int,
        stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
    ) -> None:
        self._decoder = IncrementalDecoder(tokenizer)
        self._holdback = StopStringHoldback(stop_strings=tuple(stop_strings))
        self._stop_token_ids = frozenset(stop_token_ids)
        self.max_new_tokens = max_new_tokens
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def reply(self) -> str:
        """The final text: the whole reply, or for a cancelled/failed row only what was already shown."""
        if self.finish_reason in (FinishReason.CANCELLED, FinishReason.ERROR):
            return self._holdback.shown
        return self._holdback.reply

    def push(self, token_id: int) -> str:
        """Feed the row's next generated token; return the text now safe to show."""
        if self.finished:
            return ""
        self.completion_tokens += 1
        if token_id in self._stop_token_ids:
            return self.finish(FinishReason.END_OF_UTTERANCE)
        delta = self._holdback.push(self._decoder.push(token_id))
        if self._holdback.stopped:
            return delta + self.finish(FinishReason.STOP_STRING)
        if self.completion_tokens >= self.max_new_tokens:
            return delta + self.finish(FinishReason.LENGTH)
        return delta

    def finish(self, reason: FinishReason) -> str:
        """Mark the row done (first reason wins); return the last safe text it still held back."""
        if self.finished:
            return ""
        self.finish_reason = reason
        if reason in (FinishReason.CANCELLED, FinishReason.ERROR):
            return ""
        delta = self._holdback.push(self._decoder.flush())
        return delta + self._holdback.finish()
