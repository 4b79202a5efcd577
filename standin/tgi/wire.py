"""TGI's JSON shapes (router/src/lib.rs) and its Server-Sent Events framing (axum's `Sse`).

A stream is a series of ``data:<json>`` events, one per token; the last one also carries
`generated_text` and, when asked for, `details` (finish_reason, generated_tokens, seed,
input_length). There is no ``[DONE]`` line on /generate_stream. An error, also mid-stream, is one
``data:{"error": ..., "error_type": ...}`` event. Idle streams get ``:`` keep-alive comments.
"""

from __future__ import annotations

import json
from typing import Any

from standin.tgi.engine import Finished, TokenEvent

KEEP_ALIVE = b":\n\n"
# What InferError's Display puts in front of a validation message (router/src/infer/mod.rs).
VALIDATION_PREFIX = "Input validation error: "
OVERLOADED = "Model is overloaded"


def token_json(token: TokenEvent) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def stream_event(index: int, event: TokenEvent | Finished, details: bool) -> bytes:
    """One StreamResponse as an SSE event."""
    if isinstance(event, TokenEvent):
        body = {"index": index, "token": token_json(event), "generated_text": None, "details": None}
    else:
        body = {
            "index": index,
            "token": token_json(event.token),
            "generated_text": event.generated_text,
            "details": _stream_details(event) if details else None,
        }
    return sse(body)


def generate_response(finished: Finished, details: bool) -> dict[str, Any]:
    """The body of a /generate answer; `details` also when only decoder_input_details was asked."""
    body: dict[str, Any] = {"generated_text": finished.generated_text}
    if details:
        body["details"] = {
            "finish_reason": finished.finish_reason,
            "generated_tokens": finished.generated_tokens,
            "seed": finished.seed,
            "prefill": list(finished.prefill or ()),
            "tokens": [token_json(token) for token in finished.tokens],
        }
    return body


def error_json(error: str, error_type: str) -> dict[str, str]:
    return {"error": error, "error_type": error_type}


def sse(body: dict[str, Any]) -> bytes:
    return b"data:" + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def _stream_details(finished: Finished) -> dict[str, Any]:
    return {
        "finish_reason": finished.finish_reason,
        "generated_tokens": finished.generated_tokens,
        "seed": finished.seed,
        "input_length": finished.input_length,
    }
