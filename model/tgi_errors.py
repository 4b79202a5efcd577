"""What went wrong with one request to a text-generation-inference server, in the terms the backend acts on.

The client (huggingface_hub) raises TGI's own error types for error events and JSON error bodies
(`OverloadedError`, `ValidationError`, `GenerationError`, ...), `HfHubHTTPError` for other HTTP
statuses (a 503 from a proxy in front, a 413 for a body over TGI's payload limit), and httpx2's
transport errors when the server cannot be reached or the connection dies. The backend only needs to
know which of a few things happened, and the server's words for the log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx2
from huggingface_hub.errors import (GenerationError, HfHubHTTPError, IncompleteGenerationError,
                                    InferenceTimeoutError, OverloadedError, TextGenerationError,
                                    ValidationError)

# TGI's messages for a prompt that does not fit (router/src/validation.rs).
_TOO_LONG_MARKERS = ("`inputs` tokens + `max_new_tokens` must be <=", "`inputs` must have less than")


class FailureKind(enum.Enum):
    OVERLOADED = "overloaded"  # busy now: wait and retry (another server first)
    UNREACHABLE = "unreachable"  # nothing answered: take the server out, try another
    DROPPED = "dropped"  # it answered, then the connection or the generation broke off
    TOO_LONG = "too_long"  # the prompt (or the request body) is over the server's limits
    INVALID = "invalid"  # the server refused the request for another reason
    FAILED = "failed"  # the model failed on this request


@dataclass(frozen=True)
class TgiFailure:
    kind: FailureKind
    message: str


def classify(error: BaseException) -> TgiFailure | None:
    """The failure `error` stands for, or None when it is not an error of a TGI request."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OverloadedError):
        return TgiFailure(FailureKind.OVERLOADED, message)
    if isinstance(error, ValidationError):
        too_long = any(marker in message for marker in _TOO_LONG_MARKERS)
        return TgiFailure(FailureKind.TOO_LONG if too_long else FailureKind.INVALID, message)
    if isinstance(error, GenerationError):
        return TgiFailure(FailureKind.FAILED, message)
    if isinstance(error, IncompleteGenerationError):
        return TgiFailure(FailureKind.DROPPED, message)
    if isinstance(error, TextGenerationError):  # UnknownError, e.g. "incomplete_generation_stream"
        kind = FailureKind.DROPPED if "incomplete" in message.lower() else FailureKind.FAILED
        return TgiFailure(kind, message)
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return TgiFailure(_kind_of_status(error.response.status_code), message)
    if isinstance(error, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return TgiFailure(FailureKind.UNREACHABLE, message)
    if isinstance(error, (httpx2.TransportError, InferenceTimeoutError)):
        return TgiFailure(FailureKind.DROPPED, message)
    return None


def _kind_of_status(status: int) -> FailureKind:
    if status in (429, 503):
        return FailureKind.OVERLOADED
    if status == 413:
        return FailureKind.TOO_LONG
    if status == 424:
        return FailureKind.FAILED
    if status >= 500:
        return FailureKind.UNREACHABLE
    return FailureKind.INVALID
