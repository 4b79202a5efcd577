"""The generation service: one worker thread owns the model; the event loop only queues and listens.

Requests queue up while the worker is busy; each time it is free it takes the oldest request plus every
queued request that can share its `generate` call (same sampling settings), up to `max_batch_size`, and
runs them as one left-padded batch (see model/generation.py). Deltas and results travel back to each
request's asyncio queue with `call_soon_threadsafe`, so nothing on the event loop ever waits for the model.
A failure fails only the requests it hits: a broken image fails its own request while the batch is being
prepared; a batch that raises is retried one request at a time (halved first on CUDA out-of-memory), and
only requests that have not shown any text yet are retried, so no reader ever sees text twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import torch

from model.batch import collate, image_dims, prepare_prompt
from model.errors import GenerationFailed, PromptTooLong, ServiceStopped
from model.generation import BatchRow, make_row, pad_token_id, run_batch
from model.image_features import ImageFeatureCache, encoder_embeddings
from model.loaded import LoadedModel
from model.prompt import PromptBuilder
from model.requests import GenerationRequest, ScoringJob
from model.scoring import OptionScore, continuation_ids, score_continuations
from model.types import Conversation, FinishReason, GenerationParams, GenerationResult, StreamEvent

logger = logging.getLogger(__name__)

__all__ = ["ModelService", "OptionScore", "PromptTooLong", "ServiceStats"]


@dataclass
class ServiceStats:
    """Counters for logs and an admin command; a copy is handed out, never the live object."""

    finished: collections.Counter = field(default_factory=collections.Counter)  # FinishReason -> count
    batches: int = 0
    largest_batch: int = 0
    completion_tokens: int = 0
    retries: int = 0
    image_cache_hits: int = 0
    image_cache_misses: int = 0


class ModelService:
    """Owns the model through one worker thread; `stream()` and `score_options()` are safe on any loop.

        service = ModelService(loaded, max_batch_size=settings.max_batch_size)
        await service.start()                    # in post_init
        async for event in service.stream(conversation, GenerationParams()):
            ...                                  # TextDelta(text)..., then one GenerationResult
        await service.stop()                     # in post_shutdown
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int = 8,
        max_images: int = 4,
        batch_window_s: float = 0.01,
        image_cache_size: int = 32,
    ) -> None:
        self._loaded = loaded
        self._builder = PromptBuilder(loaded, max_images)
        self._max_batch_size = max(1, max_batch_size)
        # An idle worker waits this long after the first request for others to join its batch.
        self._batch_window_s = batch_window_s
        self._pending: collections.deque[GenerationRequest | ScoringJob] = collections.deque()
        self._running: list[GenerationRequest] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stats = ServiceStats()
        # Encoder outputs of recently seen images (by ImagePart.key); 0 turns the cache off.
        self._image_cache = ImageFeatureCache(image_cache_size) if image_cache_size > 0 else None

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded

    @property
    def max_positions(self) -> int:
        return self._loaded.max_positions

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    @property
    def stats(self) -> ServiceStats:
        with self._cond:
            return ServiceStats(
                finished=collections.Counter(self._stats.finished),
                batches=self._stats.batches,
                largest_batch=self._stats.largest_batch,
                completion_tokens=self._stats.completion_tokens,
                retries=self._stats.retries,
                image_cache_hits=self._stats.image_cache_hits,
                image_cache_misses=self._stats.image_cache_misses,
            )

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._worker_main, name="model-worker", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            for request in self._running:
                request.cancel()
            self._cond.notify_all()
        await asyncio.to_thread(thread.join)
        with self._cond:
            leftovers = list(self._pending)
            self._pending.clear()
        for job in leftovers:
            job.abandon()
        self._thread = None

    async def stream(self, conversation: Conversation, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Yield `TextDelta`s, then one `GenerationResult`. Closing the iterator cancels the request."""
        self._require_running()
        submitted_at = time.perf_counter()
        prompt = await asyncio.to_thread(self._builder.build, conversation, params.max_new_tokens)
        request = GenerationRequest(
            prompt=prompt,
            params=params,
            loop=asyncio.get_running_loop(),
            submitted_at=submitted_at,
            on_done=self._record_finished,
        )
        self._submit(request)
        try:
            while True:
                event = await request.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, GenerationResult):
                    return
        finally:
            request.cancel()

    async def score_options(self, conversation: Conversation, options: Sequence[str]) -> list[float]:
        """Log-likelihood (sum of token log-probs) of each option as the assistant's reply."""
        return [score.log_prob for score in await self.score_options_detailed(conversation, options)]

    async def score_options_detailed(
        self, conversation: Conversation, options: Sequence[str]
    ) -> list[OptionScore]:
        """Like `score_options`, with token counts and per-token means (fairer across lengths)."""
        self._require_running()
        if not options:
            return []
        prompt, continuations = await asyncio.to_thread(self._build_scoring_prompt, conversation, options)
        job = ScoringJob(
            prompt=prompt,
            options=tuple(options),
            continuations=continuations,
            loop=asyncio.get_running_loop(),
        )
        self._submit(job)
        return await job.future

    def _build_scoring_prompt(self, conversation: Conversation, options: Sequence[str]):
        tokenizer = self._loaded.processor.tokenizer
        eou = self._loaded.end_of_utterance_id
        continuations = [continuation_ids(tokenizer, option, eou) for option in options]
        prompt = self._builder.build(conversation, max(len(ids) for ids in continuations))
        return prompt, continuations

    def _require_running(self) -> None:
        if not self.running:
            raise ServiceStopped("The model service is not running, so it cannot take requests right now.")

    def _submit(self, job: GenerationRequest | ScoringJob) -> None:
        with self._cond:
            if not self.running:
                raise ServiceStopped("The model service stopped before this request could run.")
            job.enqueued_at = time.monotonic()
            self._pending.append(job)
            self._cond.notify_all()

    def _record_finished(self, result: GenerationResult) -> None:
        with self._cond:
            self._stats.finished[result.finish_reason] += 1
            self._stats.completion_tokens += result.completion_tokens

    # --- worker thread -------------------------------------------------------------------------------

    def _worker_main(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                if isinstance(job, ScoringJob):
                    self._run_scoring(job)
                else:
                    self._run_generation(job)
            except BaseException as exc:  # never let the worker die: the next request must still be served
                logger.exception("model worker: unexpected failure")
                for request in self._running:
                    request.fail(_failure(_SOMETHING_WENT_WRONG, exc))
            finally:
                with self._cond:
                    self._running = []

    def _next_job(self) -> ScoringJob | list[GenerationRequest] | None:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            # Hold the oldest request at most `batch_window_s` after it arrived, for others to join it;
            # after a long batch the queue has usually waited that long already and goes at once.
            deadline = self._pending[0].enqueued_at + self._batch_window_s if self._pending else 0.0
            while len(self._pending) < self._max_batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopping:
                return None
            return self._take_batch()

    def _take_batch(self) -> ScoringJob | list[GenerationRequest]:
        for job in [job for job in self._pending if isinstance(job, GenerationRequest) and job.cancelled]:
            self._pending.remove(job)
            job.finish_without_running(FinishReason.CANCELLED)
        if not self._pending:
            return []
        first = self._pending[0]
        if isinstance(first, ScoringJob):
            return self._pending.popleft()
        batch = [
            job
            for job in self._pending
            if isinstance(job, GenerationRequest) and job.batch_key == first.batch_key
        ][: self._max_batch_size]
        for request in batch:
            self._pending.remove(request)
        self._running = batch
        return batch

    def _run_generation(self, requests: list[GenerationRequest]) -> None:
        ready = []
        for request in requests:
            if request.cancelled:
                request.finish_without_running(FinishReason.CANCELLED)
                continue
            try:
                request.prepared = prepare_prompt(self._loaded, request.prompt.input_ids, request.prompt.images)
            except Exception as exc:
                logger.warning("could not prepare a prompt's images: %s", exc, exc_info=True)
                request.fail(_failure(_BAD_IMAGE, exc))
                continue
            ready.append(request)
        if ready:
            self._generate_with_retries(ready)

    def _generate_with_retries(self, requests: list[GenerationRequest]) -> None:
        try:
            self._generate(requests)
        except torch.cuda.OutOfMemoryError as exc:
            logger.warning("out of memory with a batch of %d; retrying smaller", len(requests))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._retry(requests, exc, halve=True)
        except Exception as exc:
            logger.warning("a batch of %d failed: %s", len(requests), exc, exc_info=True)
            self._retry(requests, exc, halve=False)

    def _retry(self, requests: list[GenerationRequest], exc: BaseException, *, halve: bool) -> None:
        retryable = []
        for request in requests:
            if request.done:
                continue
            if request.cancelled:
                request.finish_without_running(FinishReason.CANCELLED)
            elif len(requests) == 1 or request.shown_text:
                out_of_memory = isinstance(exc, torch.cuda.OutOfMemoryError)
                request.fail(_failure(_OUT_OF_MEMORY if out_of_memory else _SOMETHING_WENT_WRONG, exc))
            else:
                retryable.append(request)
        if not retryable:
            return
        with self._cond:
            self._stats.retries += 1
        if halve and len(retryable) > 1:
            middle = len(retryable) // 2
            groups = [retryable[:middle], retryable[middle:]]
        else:
            groups = [[request] for request in retryable]
        for group in groups:
            self._generate_with_retries(group)

    def _generate(self, requests: list[GenerationRequest]) -> None:
        loaded = self._loaded
        batch = collate(
            [request.prepared for request in requests],
            pad_token_id=pad_token_id(loaded),
            image_token_id=loaded.image_token_ids[0],
            image_dims=image_dims(loaded),
            padding_side="left",
        )
        params = requests[0].params
        ignore_stop = requests[0].ignore_stop
        rows: list[BatchRow] = []
        for request in requests:
            request.reset_for_run()
            rows.append(make_row(loaded, request.params, request, ignore_stop=ignore_stop))
        with self._cond:
            self._stats.batches += 1
            self._stats.largest_batch = max(self._stats.largest_batch, len(requests))
        run_batch(loaded, batch, rows, params, ignore_stop=ignore_stop, image_features=self._features(requests))

    def _features(self, requests: list[GenerationRequest]):
        """Cached vision-encoder outputs for the batch, or None to let the model encode the pixels."""
        prepared = [request.prepared for request in requests]
        if self._image_cache is None or not any(p.num_images for p in prepared):
            return None
        keys = [request.prompt.image_keys for request in requests]
        features = encoder_embeddings(self._loaded, prepared, keys, self._image_cache)
        with self._cond:
            self._stats.image_cache_hits = self._image_cache.hits
            self._stats.image_cache_misses = self._image_cache.misses
        return features

    def _run_scoring(self, job: ScoringJob) -> None:
        if job.cancelled:
            return
        chunk = self._max_batch_size
        try:
            prepared = prepare_prompt(self._loaded, job.prompt.input_ids, job.prompt.images)
        except Exception as exc:
            logger.warning("could not prepare a prompt's images: %s", exc, exc_info=True)
            job.fail(_failure(_BAD_IMAGE, exc))
            return
        while True:
            try:
                scores = score_continuations(
                    self._loaded, prepared, job.continuations, job.options, max_batch_size=chunk
                )
            except torch.cuda.OutOfMemoryError as exc:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if chunk == 1:
                    job.fail(_failure(_OUT_OF_MEMORY, exc))
                    return
                chunk = max(1, chunk // 2)
                logger.warning("out of memory while scoring; retrying %d options at a time", chunk)
            except Exception as exc:
                logger.warning("scoring failed: %s", exc, exc_info=True)
                job.fail(_failure(_SOMETHING_WENT_WRONG, exc))
                return
            else:
                job.succeed(scores)
                return


_BAD_IMAGE = "One of the images could not be read. Please send it again, or as a JPEG or PNG photo."
_OUT_OF_MEMORY = (
    "The model ran out of memory while answering, even on its own. Please try again with fewer images "
    "or after starting a new conversation."
)
_SOMETHING_WENT_WRONG = "Something went wrong while the model was writing this answer. Please try again."


def _failure(message: str, cause: BaseException) -> GenerationFailed:
    """A user-facing error that keeps the technical cause for the logs."""
    error = GenerationFailed(message)
    error.__cause__ = cause
    return error
