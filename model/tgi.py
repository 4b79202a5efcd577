"""The model backend that talks to text-generation-inference servers instead of running the model here.

The prompt is built here, by the same PromptBuilder as the local service (with only the checkpoint's
processor loaded, no weights), fitted to the servers' own limits from their /info, and sent as TGI
`inputs` (model/tgi_prompt.py) with huggingface_hub's `AsyncInferenceClient` (model/tgi_client.py).
Replies stream back through the same stop rules (model/tgi_stream.py): our stops go to TGI as stop
sequences and are cut from the text. Requests are spread over the servers (model/tgi_replicas.py) and
retried when no text has been shown yet (model/tgi_retry.py); errors come out as the bot expects from
any backend: `PromptTooLong`, `ServiceStopped` when no server can be reached, `ModelBusy` when they
stayed overloaded, `GenerationFailed` for the rest. Each stream has its own HTTP connection, so closing
the stream closes the connection, and TGI stops generating for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from model.backend import BackendHealth
from model.errors import GenerationFailed, PromptTooLong, ServiceStopped
from model.loaded import END_OF_UTTERANCE
from model.prompt import PromptBuilder
from model.stopping import NEW_USER_TURN
from model.tgi_errors import FailureKind, TgiFailure, classify
from model.tgi_prompt import tgi_inputs
from model.tgi_client import TgiClient
from model.tgi_replicas import ReplicaPool, ServerLimits
from model.tgi_retry import RequestAttempts, RetryPolicy
from model.tgi_scoring import score_from_prefills
from model.tgi_stream import TgiReply
from model.types import (BuiltPrompt, Busy, Conversation, FinishReason, GenerationParams,
                         GenerationResult, StreamEvent, TextDelta)

log = logging.getLogger(__name__)

TOO_LONG = (
    "Your message is too long for the model server to read in one go, even without the older parts of "
    "the conversation. Please shorten it or split it into several messages."
)


@dataclass(frozen=True)
class _PromptModel:
    """What PromptBuilder reads from a LoadedModel: the processor and the context size."""

    processor: Any
    max_positions: int


@dataclass(frozen=True)
class _Fitted:
    built: BuiltPrompt
    inputs: str


class _RequestFailed(Exception):
    def __init__(self, failure: TgiFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class TgiBackend:
    """A `ModelBackend` over one or several TGI servers (`urls`) serving the checkpoint of `processor`."""

    def __init__(
        self,
        processor: Any,
        max_positions: int,
        urls: Sequence[str],
        *,
        max_images: int = 4,
        retry: RetryPolicy = RetryPolicy(),
        health_interval_s: float = 5.0,
        request_timeout_s: float = 120.0,
    ) -> None:
        self._processor = processor
        self._max_positions = int(max_positions)
        self._max_images = max_images
        self._retry = retry
        self._timeout_s = request_timeout_s
        self._pool = ReplicaPool(urls, health_interval_s=health_interval_s, request_timeout_s=request_timeout_s)
        self._builders: dict[int, PromptBuilder] = {}
        self._image_side = int(processor.image_processor.image_size)
        tokenizer = processor.tokenizer
        # Most important first: a server that allows fewer stop sequences gets the first ones.
        self._stops = (END_OF_UTTERANCE, NEW_USER_TURN, tokenizer.eos_token)
        self._open_clients: set[TgiClient] = set()
        self._running = False

    @property
    def pool(self) -> ReplicaPool:
        return self._pool

    async def start(self) -> None:
        """Check every server once (none needs to be up yet: TGI takes minutes to load), then keep checking."""
        await self._pool.start()
        self._running = True
        log.info("TGI backend started: %s", self._pool.describe())

    async def stop(self) -> None:
        self._running = False
        for client in list(self._open_clients):
            await client.close()
        await self._pool.stop()

    async def health(self) -> BackendHealth:
        if not self._running:
            return BackendHealth(ready=False, detail="the TGI backend is not running")
        return BackendHealth(ready=self._pool.any_healthy, detail=self._pool.describe())

    async def stream(self, conversation: Conversation, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """`TextDelta`s, then one `GenerationResult`; `Busy` before each wait while the servers are full."""
        self._require_running()
        submitted_at = time.perf_counter()
        fitted = await self._fit(conversation, params.max_new_tokens)
        attempts = RequestAttempts(self._retry)
        refitted = False
        while True:
            replica = await self._next_replica(attempts)
            if replica is None:
                wait = attempts.next_wait()
                yield Busy(attempt=attempts.waits, retry_in_s=wait)
                await asyncio.sleep(wait)
                continue
            reply = TgiReply(self._stops if not params.ignore_stop else (), self._end_tokens())
            try:
                one_try = self._stream_from(replica, fitted, params, reply, submitted_at)
                # aclosing: leaving this stream closes the server's stream now, not when it is collected.
                async with contextlib.aclosing(one_try) as events:
                    async for event in events:
                        yield event
                return
            except _RequestFailed as failed:
                if not self._running:  # stopped under us: end like the local service does
                    yield self._result(fitted, reply, FinishReason.CANCELLED, submitted_at, None, replica)
                    return
                if reply.shown:
                    raise GenerationFailed(f"The model server stopped while answering: {failed}") from failed
                if failed.failure.kind is FailureKind.TOO_LONG and not refitted:
                    refitted = True
                    fitted = await self._refit(replica, conversation, params.max_new_tokens)
                    continue
                self._after_failure(attempts, replica, failed.failure)

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        """Log-likelihood of each option as the reply, from TGI's prompt log-probabilities."""
        self._require_running()
        if not options:
            return []
        tokenizer = self._processor.tokenizer
        longest = max(len(tokenizer(" " + o.strip(), add_special_tokens=False)["input_ids"]) for o in options)
        fitted = await self._fit(conversation, longest + 1)
        builder = self._builder(self._limits().max_total_tokens)
        with_options = [f"{fitted.inputs} {builder.literal_text(o.strip())}{END_OF_UTTERANCE}" for o in options]
        prefills = await asyncio.gather(*(self._prefill(text) for text in [fitted.inputs, *with_options]))
        return score_from_prefills(prefills[0], prefills[1:])

    # --- one request on one server ---

    async def _stream_from(self, replica, fitted: _Fitted, params, reply: TgiReply, submitted_at: float):
        first_token_at = None
        client = TgiClient(replica.url, timeout=self._timeout_s)
        self._open_clients.add(client)
        try:
            with self._pool.using(replica):
                outputs = await client.text_generation(
                    fitted.inputs, stream=True, details=True, **self._generation_kwargs(params)
                )
                async for output in outputs:
                    first_token_at = first_token_at or time.perf_counter()
                    if delta := reply.push(output):
                        yield TextDelta(delta)
                    if reply.finished:
                        break
        except Exception as error:
            raise _RequestFailed(self._classified(error, replica)) from error
        finally:
            self._open_clients.discard(client)
            await client.close()  # also what tells TGI to stop generating for a stream we left
        if not reply.finished:
            raise _RequestFailed(TgiFailure(FailureKind.DROPPED, "the stream ended before its last token"))
        yield self._result(fitted, reply, reply.finish_reason, submitted_at, first_token_at, replica)

    async def _prefill(self, inputs: str) -> list:
        """The prompt's tokens with their log-probabilities (TGI's decoder_input_details)."""
        attempts = RequestAttempts(self._retry)
        while True:
            replica = await self._next_replica(attempts)
            if replica is None:
                await asyncio.sleep(attempts.next_wait())
                continue
            try:
                with self._pool.using(replica):
                    output = await replica.client.text_generation(
                        inputs, details=True, decoder_input_details=True, max_new_tokens=1
                    )
                return list(output.details.prefill)
            except Exception as error:
                failure = self._classified(error, replica)
                if failure.kind is FailureKind.TOO_LONG:
                    raise PromptTooLong(TOO_LONG) from error
                self._after_failure(attempts, replica, failure)

    def _generation_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        limits = self._limits()
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "stop": [] if params.ignore_stop else list(self._stops[: limits.max_stop_sequences]),
        }
        # TGI samples as soon as any sampling setting is present, so greedy requests send none.
        if params.do_sample and params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, seed=params.seed)
            if 0 < params.top_p < 1:
                kwargs["top_p"] = params.top_p
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        return kwargs

    # --- choosing servers, and what a failure means ---

    async def _next_replica(self, attempts: RequestAttempts):
        replica = self._pool.pick(exclude=attempts.excluded)
        if replica is None and not self._pool.any_healthy:
            await self._pool.check_all()  # a last look before giving up: one may just have come back
            replica = self._pool.pick(exclude=attempts.excluded)
        if replica is None and not attempts.overloaded:
            if attempts.failed and self._pool.any_healthy:
                raise GenerationFailed("Every model server that took this request broke it off.")
            raise ServiceStopped(f"No model server can take requests right now ({self._pool.describe()}).")
        return replica

    def _after_failure(self, attempts: RequestAttempts, replica, failure: TgiFailure) -> None:
        """Record a retryable failure for this request, or raise the error the caller should see."""
        if failure.kind is FailureKind.OVERLOADED:
            attempts.overloaded.add(replica)
        elif failure.kind in (FailureKind.UNREACHABLE, FailureKind.DROPPED):
            if failure.kind is FailureKind.UNREACHABLE:
                self._pool.mark_down(replica, failure.message)
            attempts.failed.add(replica)
        elif failure.kind is FailureKind.TOO_LONG:
            raise PromptTooLong(TOO_LONG)
        else:
            raise GenerationFailed(f"The model server could not answer this request: {failure.message}")

    def _classified(self, error: Exception, replica) -> TgiFailure:
        failure = classify(error)
        if failure is None:
            if not self._running:  # our own stop() closed the connection
                return TgiFailure(FailureKind.DROPPED, "the backend was stopped")
            raise error
        log.info("TGI request to %s failed (%s): %s", replica.name, failure.kind.value, failure.message)
        return TgiFailure(failure.kind, failure.message.replace(replica.url, replica.name))

    # --- prompts ---

    async def _fit(self, conversation: Conversation, max_new_tokens: int) -> _Fitted:
        """Build the prompt so that it fits the servers' input limit and leaves room for the reply."""
        limits = self._limits()
        builder = self._builder(limits.max_total_tokens)
        reserve = max(max_new_tokens, limits.max_total_tokens - limits.max_input_tokens)

        def build() -> _Fitted:
            built = builder.build(conversation, reserve)
            return _Fitted(built=built, inputs=tgi_inputs(built, self._image_side))

        return await asyncio.to_thread(build)

    async def _refit(self, replica, conversation, max_new_tokens: int) -> _Fitted:
        """A server said the prompt is too long: its limits may have changed; fit again once."""
        try:
            await self._pool.refresh_limits(replica)
        except Exception as error:  # cannot tell: the prompt stays too long for it
            raise PromptTooLong(TOO_LONG) from error
        return await self._fit(conversation, max_new_tokens)

    def _limits(self) -> ServerLimits:
        return self._pool.limits() or ServerLimits(self._max_positions - 1, self._max_positions)

    def _builder(self, max_positions: int) -> PromptBuilder:
        if max_positions not in self._builders:
            model = _PromptModel(self._processor, max_positions)
            self._builders[max_positions] = PromptBuilder(model, self._max_images)
        return self._builders[max_positions]

    def _end_tokens(self) -> tuple[str, ...]:
        return (END_OF_UTTERANCE, self._processor.tokenizer.eos_token)

    def _result(self, fitted: _Fitted, reply: TgiReply, reason, submitted_at, first_token_at, replica):
        now = time.perf_counter()
        cancelled = reason is FinishReason.CANCELLED
        return GenerationResult(
            text=reply.shown if cancelled else reply.reply,
            finish_reason=reason,
            prompt_tokens=len(fitted.built.input_ids),
            completion_tokens=reply.tokens,
            time_to_first_token_s=None if first_token_at is None else first_token_at - submitted_at,
            total_s=now - submitted_at,
            dropped_turns=fitted.built.dropped_turns,
            extra={
                "dropped_images": fitted.built.dropped_images,
                "server": replica.name,
                "server_input_length": reply.server_input_length,
            },
        )

    def _require_running(self) -> None:
        if not self._running:
            raise ServiceStopped("The TGI backend is not running, so it cannot take requests right now.")
