"""The one contract between the bot and a model, wherever the model runs.

The bot only ever talks to a `ModelBackend`: the in-process `ModelService` (model/service.py) is one,
the text-generation-inference client (model/tgi.py) is another, and model/backends.py makes either from
plain options. Both stream the same events (`TextDelta`s, then one `GenerationResult` with a
`FinishReason`; a remote one may first send `Busy` while its servers are overloaded), apply the same stop
rules, and raise the same errors from model/errors.py, so nothing above this seam knows which one it has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from model.types import Conversation, GenerationParams, StreamEvent


@dataclass(frozen=True)
class BackendHealth:
    """Whether the backend can take requests now, and a short reason when it cannot."""

    ready: bool
    detail: str = ""


@runtime_checkable
class ModelBackend(Protocol):
    """Stream a conversation's answer, score options, and a lifecycle the application owns."""

    async def start(self) -> None:
        """Get ready to take requests (called once, in the application's post_init)."""

    async def stop(self) -> None:
        """Cancel what runs, refuse what waits, release resources (called once, at shutdown)."""

    def stream(self, conversation: Conversation, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """`TextDelta`s, then one `GenerationResult` (maybe `Busy` first); closing it cancels the request.

        Raises `PromptTooLong`, `ServiceStopped` or `GenerationFailed` (`ModelBusy` among them)."""

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        """The log-likelihood of each option as the assistant's whole reply to the last user turn."""

    async def health(self) -> BackendHealth:
        """Cheap readiness check for health endpoints and load spreading."""
