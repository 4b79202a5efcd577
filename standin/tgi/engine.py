"""The stand-in's model: a real (tiny) IDEFICS checkpoint, run the way TGI's IdeficsCausalLM runs one.

As in TGI's server, the chunks go through the IDEFICS processor (which strips each text chunk and
would take a chunk that looks like a URL or ``data:`` for an image), each new token's text comes from
re-decoding a short window with special tokens kept, and one request stops by TGI's rules in TGI's
order: `max_new_tokens` first, then the EOS token, then a stop sequence at the end of the text so far
(the stop text stays in `generated_text`, which is decoded without special tokens). Generation itself
is transformers' `generate`, observed through a streamer (the chosen tokens), a logits processor (their
log-probabilities) and a stopping criterion (TGI's stop rules and the client going away). One request
runs at a time, like one request on one GPU.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer
from transformers.models.idefics.processing_idefics import is_url

from model.loaded import LoadedModel
from standin.tgi.inputs import Chunk, ImageChunk
from standin.tgi.validation import Parameters


class TgiGenerationError(Exception):
    """A request that failed in the model server (TGI: 424, `error_type` "generation")."""


@dataclass(frozen=True)
class TokenEvent:
    id: int
    text: str
    logprob: float
    special: bool


@dataclass(frozen=True)
class Finished:
    """The last token of a request, with everything TGI reports about the whole generation."""

    token: TokenEvent
    generated_text: str
    finish_reason: str  # length | eos_token | stop_sequence
    generated_tokens: int
    seed: int | None
    input_length: int
    tokens: tuple[TokenEvent, ...]
    prefill: tuple[dict, ...] | None


@dataclass
class Job:
    """One validated request on its way through the model; `emit` is called on the worker thread."""

    chunks: Sequence[Chunk]
    params: Parameters
    max_new_tokens: int
    seed: int | None
    input_length: int
    emit: Callable[[TokenEvent | Finished | Exception], None]
    fetch_attempts: list[str]
    cancelled: threading.Event = field(default_factory=threading.Event)


class Engine:
    """Runs jobs on a loaded checkpoint, one at a time."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._tokenizer = loaded.processor.tokenizer
        self._lock = threading.Lock()

    def router_input_length(self, counted_text: str) -> int:
        """The router's count: its tokenizer over the text with one "<image>" per image."""
        return len(self._tokenizer(counted_text)["input_ids"])

    def run(self, job: Job) -> None:
        """Generate for `job`, emitting its events; any failure is emitted as an exception."""
        try:
            with self._lock:
                if job.cancelled.is_set():  # its client left while it waited for the model
                    return
                inputs = self._encode(job)
                prefill = self._prefill(inputs) if job.params.decoder_input_details else None
                self._generate(job, inputs, prefill)
        except TgiGenerationError as error:
            job.emit(error)
        except Exception as error:  # the real server answers any model failure with a generation error
            job.emit(TgiGenerationError(f"Request failed during generation: {error}"))

    def _encode(self, job: Job) -> dict:
        items = []
        for chunk in job.chunks:
            if isinstance(chunk, ImageChunk):
                items.append(chunk.image)
                continue
            stripped = chunk.strip(" ")
            if is_url(stripped) or stripped.startswith("data:"):  # TGI's processor: "an image to fetch"
                job.fetch_attempts.append(stripped)
                raise TgiGenerationError(f"Request failed during generation: cannot fetch {stripped[:80]!r}")
            items.append(chunk)
        return dict(self.loaded.processor(text=items, return_tensors="pt"))

    @torch.inference_mode()
    def _prefill(self, inputs: dict) -> tuple[dict, ...]:
        ids = inputs["input_ids"][0].tolist()
        logits = self.loaded.model(**inputs).logits[0].float()
        log_probs = torch.log_softmax(logits, dim=-1)
        texts = self._tokenizer.batch_decode(
            [[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        first = {"id": ids[0], "text": texts[0], "logprob": None}
        rest = [
            {"id": ids[i], "text": texts[i], "logprob": float(log_probs[i - 1, ids[i]])}
            for i in range(1, len(ids))
        ]
        return (first, *rest)

    @torch.inference_mode()
    def _generate(self, job: Job, inputs: dict, prefill: tuple[dict, ...] | None) -> None:
        decoding = _Decoding(self._tokenizer, inputs["input_ids"][0].tolist(), job, prefill)
        sampling = {}
        if job.params.sampling:
            torch.manual_seed(job.seed or 0)
            sampling = dict(
                do_sample=True,
                temperature=job.params.temperature or 1.0,
                top_k=job.params.top_k or 0,
                top_p=job.params.top_p or 1.0,
            )
        self.loaded.model.generate(
            **inputs,
            **sampling,
            max_new_tokens=job.max_new_tokens,
            repetition_penalty=job.params.repetition_penalty or 1.0,
            pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
            logits_processor=LogitsProcessorList([decoding.recorder]),
            stopping_criteria=StoppingCriteriaList([_StopWhenDone(decoding)]),
            streamer=_Streamer(decoding),
        )


class _LogProbRecorder(LogitsProcessor):
    """Keeps the last step's log-probabilities (after every other processor) for the chosen token."""

    last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = torch.log_softmax(scores[0].float(), dim=-1)
        return scores


class _Decoding:
    """One request's tokens, their text (TGI's decode_token), and TGI's stopping criteria."""

    def __init__(self, tokenizer, prompt_ids: list[int], job: Job, prefill) -> None:
        self._tokenizer = tokenizer
        self.job = job
        self._prefill = prefill
        self.recorder = _LogProbRecorder()
        self.all_ids = list(prompt_ids)
        self.prefix_offset = max(len(prompt_ids) - 5, 0)
        self.read_offset = len(prompt_ids)
        self.tokens: list[TokenEvent] = []
        self.output = ""
        self.done = False
        self._stops = [re.compile(re.escape(stop) + "$") for stop in job.params.stop]
        self._eos = {tokenizer.eos_token_id}
        self._special = set(tokenizer.all_special_ids)

    def on_token(self, token_id: int) -> None:
        self.all_ids.append(token_id)
        text, self.prefix_offset, self.read_offset = self._decode_token(self.prefix_offset, self.read_offset)
        logprob = float(self.recorder.last[token_id]) if self.recorder.last is not None else 0.0
        token = TokenEvent(id=token_id, text=text, logprob=logprob, special=token_id in self._special)
        self.tokens.append(token)
        reason = self._stop_reason(token_id, text)
        if reason is None:
            self.job.emit(token)
            return
        self.done = True
        self.job.emit(self._finished(token, reason))

    def _stop_reason(self, token_id: int, text: str) -> str | None:
        if len(self.tokens) >= self.job.max_new_tokens:
            return "length"
        if token_id in self._eos:
            return "eos_token"
        if self._stops:
            self.output = (self.output + text)[-300:]
            if any(stop.search(self.output) for stop in self._stops):
                return "stop_sequence"
        return None

    def _finished(self, token: TokenEvent, reason: str) -> Finished:
        generated = len(self.tokens)
        text, _, _ = self._decode_token(
            len(self.all_ids) - generated - 1, len(self.all_ids) - generated, skip_special_tokens=True
        )
        if self.job.params.return_full_text:
            text = "".join(c for c in self.job.chunks if isinstance(c, str)) + text
        return Finished(
            token=token,
            generated_text=text,
            finish_reason=reason,
            generated_tokens=generated,
            seed=self.job.seed,
            input_length=self.job.input_length,
            tokens=tuple(self.tokens),
            prefill=self._prefill,
        )

    def _decode_token(self, prefix_offset: int, read_offset: int, skip_special_tokens: bool = False):
        """TGI's Model.decode_token: text that is complete, and the window offsets to carry on from."""
        decode = lambda ids: self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)  # noqa: E731
        prefix_text = decode(self.all_ids[prefix_offset:read_offset])
        new_text = decode(self.all_ids[prefix_offset:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            return new_text[len(prefix_text) :], read_offset, len(self.all_ids)
        return "", prefix_offset, read_offset


class _Streamer(BaseStreamer):
    """Hands each chosen token to the request's decoding (the first `put` is the prompt: skipped)."""

    def __init__(self, decoding: _Decoding) -> None:
        self._decoding = decoding
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if not self._decoding.done:
            self._decoding.on_token(int(value.reshape(-1)[0]))

    def end(self) -> None:
        pass


class _StopWhenDone(StoppingCriteria):
    def __init__(self, decoding: _Decoding) -> None:
        self._decoding = decoding

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = self._decoding.done or self._decoding.job.cancelled.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)
