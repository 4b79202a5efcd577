"""What a text-generation-inference router accepts, with its own error messages (router/src/validation.rs).

TGI checks a request's parameters in a fixed order and refuses the first problem it finds with a
`ValidationError` whose text clients see verbatim (``Input validation error: <message>``); the stand-in
keeps that order and those texts so that a client's handling of them is tested against the real words.
Parameters TGI accepts but the stand-in cannot honour are refused with a message that says so, rather
than silently ignored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# TGI generates at most this many tokens per scheduling round; its length check uses it (validation.rs).
DEFAULT_GENERATION_LENGTH = 1024
_UNSUPPORTED = ("grammar", "adapter_id", "frequency_penalty", "typical_p", "truncate")


class TgiValidationError(Exception):
    """A request TGI would refuse with 422 (`error_type` "validation")."""


@dataclass(frozen=True)
class Limits:
    """The router limits a TGI launcher sets (its defaults for a 2048-position model)."""

    max_input_tokens: int = 2047
    max_total_tokens: int = 2048
    max_stop_sequences: int = 4
    max_best_of: int = 2
    max_top_n_tokens: int = 5
    max_concurrent_requests: int = 128


@dataclass(frozen=True)
class Parameters:
    """The `parameters` object of a /generate or /generate_stream request, after TGI's defaults."""

    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    details: bool = False
    decoder_input_details: bool = False
    return_full_text: bool = False
    best_of: int | None = None
    top_n_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sampling(self) -> bool:
        """TGI samples when asked to, or when any sampling setting is given at all."""
        return self.do_sample or any(v is not None for v in (self.temperature, self.top_k, self.top_p))


def parse_request(body: Any) -> tuple[str, Parameters]:
    """`inputs` and `parameters` of a request body; TypeError/ValueError for a malformed one."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
        raise ValueError("Failed to deserialize the JSON body into the target type: missing field `inputs`")
    raw = body.get("parameters") or {}
    if not isinstance(raw, dict):
        raise ValueError("Failed to deserialize the JSON body into the target type: parameters")
    known = {name for name in Parameters.__dataclass_fields__ if name != "extra"}
    values = {name: raw[name] for name in known if raw.get(name) is not None}
    if "stop" in values:
        values["stop"] = tuple(str(s) for s in values["stop"])
    extra = {name: value for name, value in raw.items() if name not in known and value not in (None, False)}
    return body["inputs"], Parameters(**values, extra=extra)


def validate_stream(params: Parameters) -> None:
    """What /generate_stream refuses before anything else (even before checking for overload)."""
    if (params.best_of or 1) != 1:
        raise TgiValidationError("`best_of` != 1 is not supported when streaming tokens")
    if params.decoder_input_details:
        raise TgiValidationError("`decoder_input_details` == true is not supported when streaming tokens")


def validate_parameters(inputs: str, params: Parameters, limits: Limits) -> int | None:
    """Raise `TgiValidationError` as TGI would; return the seed TGI assigns (None when greedy)."""
    best_of = params.best_of or 1
    if best_of > 1 and not params.sampling:
        raise TgiValidationError("you must use sampling when `best_of` is > 1")
    if params.temperature is not None and params.temperature <= 0.0:
        raise TgiValidationError("`temperature` must be strictly positive")
    if params.repetition_penalty is not None and params.repetition_penalty <= 0.0:
        raise TgiValidationError("`repetition_penalty` must be strictly positive")
    if params.top_p is not None and not 0.0 < params.top_p < 1.0:
        raise TgiValidationError("`top_p` must be > 0.0 and < 1.0")
    if params.top_k is not None and params.top_k <= 0:
        raise TgiValidationError("`top_k` must be strictly positive")
    if params.max_new_tokens == 0:
        raise TgiValidationError("`max_new_tokens` must be strictly positive")
    if len(params.stop) > limits.max_stop_sequences:
        raise TgiValidationError(
            f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(params.stop)}"
        )
    if params.top_n_tokens is not None and params.top_n_tokens > limits.max_top_n_tokens:
        raise TgiValidationError(
            f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {params.top_n_tokens}"
        )
    if not inputs:
        raise TgiValidationError("`inputs` cannot be empty")
    _refuse_unsupported(params, best_of)
    if not params.sampling:
        return None
    return params.seed if params.seed is not None else random.getrandbits(63)


def validate_length(input_length: int, max_new_tokens: int | None, limits: Limits) -> int:
    """TGI's token budget checks; return the number of new tokens the request may generate."""
    if max_new_tokens is None:
        max_new_tokens = max(limits.max_total_tokens - input_length, 0)
    counted = min(max_new_tokens, DEFAULT_GENERATION_LENGTH)
    if input_length + counted > limits.max_total_tokens:
        raise TgiValidationError(
            f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
            f"Given: {input_length} `inputs` tokens and {counted} `max_new_tokens`"
        )
    if input_length > limits.max_input_tokens:
        raise TgiValidationError(
            f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {input_length}"
        )
    return max_new_tokens


def _refuse_unsupported(params: Parameters, best_of: int) -> None:
    named = [name for name in _UNSUPPORTED if name in params.extra]
    if best_of > 1:
        named.append("best_of")
    if params.top_n_tokens:
        named.append("top_n_tokens")
    if named:
        raise TgiValidationError(f"this TGI stand-in does not implement {', '.join(named)}")
