"""The model worker's loop: continuous batching, one decode step at a time, on its own thread.

Between two steps the worker (1) runs a waiting scoring job, if any (one forward pass), (2) prefills
newly arrived requests as a small batch of their own and joins them to the running batch, up to the
batch limit, (3) drops rows that finished or whose reader went away, and (4) runs one step for every
row left (model/decoding.py). A request that arrives while a long answer is being written therefore
starts at the next step instead of after the whole answer, and a finished row stops costing compute.

Failures stay with the requests they hit: a broken image fails its own request before any prefill; a
failing prefill touches only the newcomers; a failing step ends the running batch. Requests that have
not shown any text yet are put back at the front of the queue (so no reader ever sees text twice):
after CUDA out-of-memory with a lower batch limit (half the rows; back to the maximum once the batch
drains), after any other error to be retried alone. A request that fails alone is answered with an error.
"""

from __future__ import annotations

import logging

import torch

from model.batch import collate, image_dims, prepare_prompt
from model.decoding import RunningBatch, concatenate, filter_rows, new_row, prefill, step
from model.errors import GenerationFailed
from model.generation import pad_token_id
from model.image_features import ImageFeatureCache, encoder_embeddings
from model.loaded import LoadedModel
from model.requests import GenerationRequest, ScoringJob
from model.scoring import score_continuations
from model.stats import StatsRecorder
from model.types import FinishReason
from model.work_queue import Work, WorkQueue

logger = logging.getLogger(__name__)


class DecodeWorker:
    """Owns the running batch; `run()` is the body of the service's worker thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        queue: WorkQueue,
        stats: StatsRecorder,
        *,
        max_batch_size: int,
        image_cache: ImageFeatureCache | None,
    ) -> None:
        self._loaded = loaded
        self._queue = queue
        self._stats = stats
        self._max_batch_size = max_batch_size
        self._limit = max_batch_size  # lowered after out-of-memory until the running batch drains
        self._image_cache = image_cache
        self._batch: RunningBatch | None = None
        self._admitting: list[GenerationRequest] = []

    def run(self) -> None:
        while True:
            work = self._queue.next_work(idle=self._batch is None, room=self._room())
            if work is None:
                self._end_running(FinishReason.CANCELLED)
                return
            try:
                self._between_steps(work)
                if self._batch is not None:
                    self._step()
            except BaseException as exc:  # never let the worker die: the next request must still be served
                logger.exception("model worker: unexpected failure")
                self._fail_everything_in_flight(exc)

    def _room(self) -> int:
        if self._batch is None:
            return self._limit
        if any(row.sink.solo for row in self._batch.rows):
            return 0
        return max(0, self._limit - len(self._batch))

    def _between_steps(self, work: Work) -> None:
        if work.scoring is not None:
            self._run_scoring(work.scoring)
        if work.requests:
            self._admitting = work.requests
            self._admit(work.requests)
            self._admitting = []
        self._drop_finished_rows()

    # --- joining ----------------------------------------------------------------------------------

    def _admit(self, requests: list[GenerationRequest]) -> None:
        ready = [request for request in requests if self._prepare(request)]
        if not ready:
            return
        running = 0 if self._batch is None else len(self._batch)
        self._stats.batch_built(running + len(ready))
        try:
            newcomers = self._prefill(ready)
        except torch.cuda.OutOfMemoryError as exc:
            logger.warning("out of memory starting %d requests beside %d rows", len(ready), running)
            self._recover(ready, exc, batch_size=running + len(ready))
        except Exception as exc:
            logger.warning("starting a batch of %d failed: %s", len(ready), exc, exc_info=True)
            self._recover(ready, exc, batch_size=len(ready))
        else:
            self._join(newcomers)

    def _join(self, newcomers: RunningBatch) -> None:
        if self._batch is None:
            self._batch = newcomers
        else:
            try:
                self._batch = concatenate(self._batch, newcomers)
            except Exception as exc:  # a half-joined cache is unusable: every row starts again or fails
                logger.warning("joining %d rows to %d failed: %s", len(newcomers), len(self._batch), exc)
                # `concatenate` may have moved the newcomers' rows over already: each request once.
                requests = list(dict.fromkeys(row.sink for row in self._batch.rows + newcomers.rows))
                self._batch = None
                self._stats.running(0)
                self._recover(requests, exc, batch_size=len(requests))
                return
        self._stats.running(len(self._batch))

    def _prepare(self, request: GenerationRequest) -> bool:
        if request.cancelled:
            request.finish_without_running(FinishReason.CANCELLED)
            return False
        if request.prepared is not None:  # a retry: its images were already processed
            return True
        try:
            request.prepared = prepare_prompt(self._loaded, request.prompt.input_ids, request.prompt.images)
        except Exception as exc:
            logger.warning("could not prepare a prompt's images: %s", exc, exc_info=True)
            request.fail(_failure(_BAD_IMAGE, exc))
            return False
        return True

    def _prefill(self, requests: list[GenerationRequest]) -> RunningBatch:
        loaded = self._loaded
        rows = []
        for request in requests:
            request.reset_for_run()
            rows.append(new_row(loaded, request.params, request, request.prompt.input_ids))
        batch = collate(
            [request.prepared for request in requests],
            pad_token_id=pad_token_id(loaded),
            image_token_id=loaded.image_token_ids[0],
            image_dims=image_dims(loaded),
            padding_side="left",
        )
        return prefill(loaded.model, rows, batch, loaded.device, self._features(requests))

    def _features(self, requests: list[GenerationRequest]) -> torch.Tensor | None:
        """Cached vision-encoder outputs for the newcomers, or None to let the model encode the pixels."""
        prepared = [request.prepared for request in requests]
        if self._image_cache is None or not any(p.num_images for p in prepared):
            return None
        keys = [request.prompt.image_keys for request in requests]
        features = encoder_embeddings(self._loaded, prepared, keys, self._image_cache)
        self._stats.image_cache(self._image_cache.hits, self._image_cache.misses)
        return features

    # --- stepping and leaving -----------------------------------------------------------------------

    def _drop_finished_rows(self) -> None:
        if self._batch is None:
            return
        for row in self._batch.rows:
            if not row.finished and row.sink.cancelled:
                row.output.finish(FinishReason.CANCELLED)
        keep = [index for index, row in enumerate(self._batch.rows) if not row.finished]
        self._batch = filter_rows(self._batch, keep)
        self._stats.running(0 if self._batch is None else len(self._batch))
        if self._batch is None:
            self._limit = self._max_batch_size

    def _step(self) -> None:
        batch = self._batch
        try:
            step(self._loaded.model, batch)
        except torch.cuda.OutOfMemoryError as exc:
            logger.warning("out of memory in a step of %d rows; retrying with fewer", len(batch))
            self._abandon_batch(exc)
        except Exception as exc:
            logger.warning("a step of %d rows failed: %s", len(batch), exc, exc_info=True)
            self._abandon_batch(exc)
        else:
            self._stats.stepped()
            # Rows leave as soon as they finish, so the next newcomers' room and batch size are right.
            self._drop_finished_rows()

    def _abandon_batch(self, exc: BaseException) -> None:
        batch, self._batch = self._batch, None
        self._stats.running(0)
        self._recover([row.sink for row in batch.rows], exc, batch_size=len(batch))

    def _recover(self, requests: list[GenerationRequest], exc: BaseException, *, batch_size: int) -> None:
        """Fail what cannot be retried; put the rest back in line, smaller (out of memory) or alone."""
        out_of_memory = isinstance(exc, torch.cuda.OutOfMemoryError)
        if out_of_memory and torch.cuda.is_available():
            torch.cuda.empty_cache()
        retry = []
        for request in requests:
            if request.done:
                continue
            if request.cancelled:
                request.finish_without_running(FinishReason.CANCELLED)
            elif batch_size == 1 or request.shown_text or request.solo:
                request.fail(_failure(_OUT_OF_MEMORY if out_of_memory else _SOMETHING_WENT_WRONG, exc))
            else:
                retry.append(request)
        if not retry:
            return
        self._stats.retried()
        if out_of_memory:
            self._limit = max(1, batch_size // 2)
        for request in retry:
            request.solo = request.solo or not out_of_memory
        self._queue.put_back(retry)

    def _end_running(self, reason: FinishReason) -> None:
        if self._batch is not None:
            for row in self._batch.rows:
                row.output.finish(reason)
        self._batch = None
        self._stats.running(0)

    def _fail_everything_in_flight(self, exc: BaseException) -> None:
        requests = [row.sink for row in self._batch.rows] if self._batch is not None else []
        for request in requests + self._admitting:
            request.fail(_failure(_SOMETHING_WENT_WRONG, exc))
        self._batch = None
        self._admitting = []
        self._stats.running(0)

    # --- scoring ------------------------------------------------------------------------------------

    def _run_scoring(self, job: ScoringJob) -> None:
        if job.cancelled:
            return
        try:
            prepared = prepare_prompt(self._loaded, job.prompt.input_ids, job.prompt.images)
        except Exception as exc:
            logger.warning("could not prepare a prompt's images: %s", exc, exc_info=True)
            job.fail(_failure(_BAD_IMAGE, exc))
            return
        chunk = self._max_batch_size
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
