"""The generation service: one worker thread owns the model; the event loop only queues and listens.

Requests queue up (model/work_queue.py) and the worker batches them continuously (model/worker.py):
between two decode steps it lets finished and cancelled rows leave the running batch and joins newly
arrived requests to it, so a new question starts being answered at the next step rather than after
everyone else's answers, up to `max_batch_size` rows at a time. Deltas and results travel back to each
request's asyncio queue with `call_soon_threadsafe`, so nothing on the event loop ever waits for the model.
A failure fails only the requests it hits; see model/worker.py for how retries keep text from repeating.
The worker owns the prefix KV cache (`prefix_cache_bytes`, sized at start) and reads long prompts in
chunks of `prefill_chunk_tokens` between steps (README, Performance: the serving engine).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence

from model.backend import BackendHealth
from model.errors import PromptTooLong, ServiceStopped
from model.image_features import ImageFeatureCache
from model.loaded import LoadedModel
from model.prefix_cache import PrefixCache, prefix_cache_budget
from model.prompt import PromptBuilder
from model.requests import GenerationRequest, ScoringJob
from model.scoring import OptionScore, continuation_ids
from model.stats import ServiceStats, StatsRecorder
from model.types import Conversation, GenerationParams, GenerationResult, StreamEvent
from model.work_queue import WorkQueue
from model.worker import DecodeWorker

logger = logging.getLogger(__name__)

__all__ = ["ModelService", "OptionScore", "PromptTooLong", "ServiceStats"]


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
        prefix_cache_bytes: int | None = None,
        prefill_chunk_tokens: int = 256,
        cpu_packed_linears: bool = True,
    ) -> None:
        self._loaded = loaded
        self._builder = PromptBuilder(loaded, max_images)
        self._max_batch_size = max(1, max_batch_size)
        # An idle worker waits this long after the first request for others to join its batch.
        self._batch_window_s = batch_window_s
        self._queue: WorkQueue | None = None
        self._thread: threading.Thread | None = None
        self._stats = StatsRecorder()
        # Encoder outputs of recently seen images (by ImagePart.key); 0 turns the cache off.
        self._image_cache = ImageFeatureCache(image_cache_size) if image_cache_size > 0 else None
        # Prompt KV kept for reuse across turns and chats: None sizes it from free memory, 0 turns it off.
        self._prefix_cache_bytes = prefix_cache_bytes
        # Most prompt tokens prefilled between two decode steps; 0 prefills a whole prompt at once.
        self._prefill_chunk_tokens = max(0, prefill_chunk_tokens)
        # Multi-row linears of the engine on CPU float32 through oneDNN, weights packed once.
        self._cpu_packed_linears = cpu_packed_linears

    @property
    def loaded(self) -> LoadedModel:
        return self._loaded

    @property
    def max_positions(self) -> int:
        return self._loaded.max_positions

    @property
    def prefix_cache_bytes(self) -> int | None:
        """The prefix cache's byte budget as asked for (None: sized from free memory at start; 0: off)."""
        return self._prefix_cache_bytes

    @property
    def prefill_chunk_tokens(self) -> int:
        return self._prefill_chunk_tokens

    @property
    def cpu_packed_linears(self) -> bool:
        return self._cpu_packed_linears

    @property
    def running(self) -> bool:
        return self._thread is not None and self._queue is not None and not self._queue.closed

    @property
    def stats(self) -> ServiceStats:
        return self._stats.snapshot()

    async def health(self) -> BackendHealth:
        if self.running:
            return BackendHealth(ready=True)
        return BackendHealth(ready=False, detail="the model worker is not running")

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._queue = WorkQueue(self._batch_window_s)
        worker = DecodeWorker(
            self._loaded,
            self._queue,
            self._stats,
            max_batch_size=self._max_batch_size,
            image_cache=self._image_cache,
            prefix_cache=self._make_prefix_cache(),
            prefill_chunk_tokens=self._prefill_chunk_tokens,
            pack_linears=self._cpu_packed_linears,
        )
        self._thread = threading.Thread(target=worker.run, name="model-worker", daemon=True)
        self._thread.start()

    def _make_prefix_cache(self) -> PrefixCache | None:
        budget = prefix_cache_budget(self._prefix_cache_bytes, self._loaded.device)
        logger.info("prefix cache: %d MiB", budget // 2**20)
        return PrefixCache(budget) if budget > 0 else None

    async def stop(self) -> None:
        """Cancel what is running (it ends within a step), abandon what waits, and join the worker."""
        thread, queue = self._thread, self._queue
        if thread is None or queue is None:
            return
        queue.close()
        await asyncio.to_thread(thread.join)
        for job in queue.drain():
            job.abandon()
        self._thread = None

    async def stream(
        self, conversation: Conversation, params: GenerationParams
    ) -> AsyncIterator[StreamEvent]:
        """Yield `TextDelta`s, then one `GenerationResult`. Closing the iterator cancels the request."""
        self._require_running()
        submitted_at = time.perf_counter()
        prompt = await asyncio.to_thread(self._builder.build, conversation, params.max_new_tokens)
        request = GenerationRequest(
            prompt=prompt,
            params=params,
            loop=asyncio.get_running_loop(),
            submitted_at=submitted_at,
            on_done=self._stats.finished,
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
        if self._queue is None:
            raise ServiceStopped("The model service stopped before this request could run.")
        self._queue.put(job)
