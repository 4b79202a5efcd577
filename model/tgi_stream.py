"""One TGI token stream as the backend contract wants it: safe text deltas, then how it ended.

TGI sends every token's text, special tokens included (marked `special`), and keeps a stop sequence's
text in what it generated. Here the same rules as in the local service apply: the end-of-utterance and
EOS tokens end the reply and are never shown, other special tokens (image tokens, which TGI cannot
ban) are dropped, and text goes through model/stopping.py's `StopStringHoldback`, so nothing that is or
may become a stop string (``"\\nUser:"``, a spelled-out ``<end_of_utterance>``) reaches a reader, and
the deltas add up to exactly the final, stripped reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model.stopping import StopStringHoldback
from model.types import FinishReason

_FINISH_REASONS = {"length": FinishReason.LENGTH, "eos_token": FinishReason.END_OF_UTTERANCE}


class TgiReply:
    """Feed it the stream's outputs (`TextGenerationStreamOutput`s) in order; read `reply` at the end."""

    def __init__(self, stop_strings: Sequence[str], end_tokens: Sequence[str]) -> None:
        self._holdback = StopStringHoldback(stop_strings=tuple(stop_strings))
        self._end_tokens = frozenset(end_tokens)
        self.tokens = 0
        self.finish_reason: FinishReason | None = None
        self.server_input_length: int | None = None

    @property
    def shown(self) -> str:
        """What readers have been given so far."""
        return self._holdback.shown

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def reply(self) -> str:
        return self._holdback.reply

    def push(self, output: Any) -> str:
        """Take one stream output; return the text that is now safe to show (often "")."""
        self.tokens += 1
        token = output.token
        delta = ""
        if self.finish_reason is None:
            if token.special:
                if token.text in self._end_tokens:
                    delta = self._finish(FinishReason.END_OF_UTTERANCE)
            else:
                delta = self._push_text(token.text)
        if output.details is not None:
            self.tokens = int(output.details.generated_tokens or self.tokens)
            self.server_input_length = getattr(output.details, "input_length", None)
            delta += self._finish(_FINISH_REASONS.get(output.details.finish_reason, FinishReason.STOP_STRING))
        return delta

    def _push_text(self, text: str) -> str:
        if self.finish_reason is not None or not text:
            return ""
        delta = self._holdback.push(text)
        if self._holdback.stopped:
            delta += self._finish(FinishReason.STOP_STRING)
        return delta

    def _finish(self, reason: FinishReason) -> str:
        if self.finish_reason is not None:
            return ""
        self.finish_reason = reason
        return self._holdback.finish()
