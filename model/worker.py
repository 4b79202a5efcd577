"""The model worker's loop: continuous batching, one decode step at a time, on its own thread.

Between two steps the worker (1) runs a waiting scoring job, if any (model/scoring_job.py), (2) sets
newly arrived requests up for prefill (model/prefill.py: their image states once, and the KV of their
longest cached prefix), up to the batch limit, (3) reads their prompts, at most `prefill_chunk_tokens`
tokens per tick while rows are running, and no more than takes about 1.5 ticks' time (all at once
otherwise; model/chunk_pacing.py), and joins each finished one to the running group of about its
length, or makes it a group of its own (model/length_groups.py), (4) drops rows that finished or
whose reader went away (keeping their KV in the prefix cache for the conversation's next turn), and
(5) runs one decode step of every group (model/decoding.py): a tick. Steps return per-request events, which the worker
delivers. A request that arrives while a long answer is being written therefore starts within a step or
a few instead of after the whole answer, a long newcomer neither stalls nor pads the rows that are
streaming, and a finished row stops costing compute. Decode steps and prompt chunks take the packed
multi-row linears where there are some (model/packed_linears.py).

Failures stay with the requests they hit: a broken image fails its own request before any prefill; a
failing prefill touches only its newcomer; a failing step ends its group. Requests that have
not shown any text yet are put back at the front of the queue (so no reader ever sees text twice):
after CUDA out-of-memory with a lower batch limit (half the rows; back to the maximum once the batch
drains), after any other error to be retried alone. A request that fails alone is answered with an error.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

import torch

from model.batch import prepare_prompt
from model.chunk_pacing import ChunkPacing
from model.decoding import DecodeRow, RunningBatch, concatenate, filter_rows, new_row, step
from model.errors import BAD_IMAGE, OUT_OF_MEMORY, SOMETHING_WENT_WRONG, failure
from model.generation import StepEvent, deliver
from model.image_features import ImageFeatureCache, image_latents_for
from model.length_groups import LengthGroups
from model.loaded import LoadedModel
from model.packed_linears import PackedLinears, packed_linears_for
from model.prefill import Prefill, advance, finish_prefill, prefill_together, prompt_kv, start_prefill
from model.prefix_cache import PrefixCache
from model.requests import GenerationRequest
from model.scoring_job import run_scoring_job
from model.stats import StatsRecorder
from model.types import FinishReason
from model.work_queue import Work, WorkQueue

logger = logging.getLogger(__name__)


class DecodeWorker:
    """Owns the running batch and the prompts being read; `run()` is the body of the worker thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        queue: WorkQueue,
        stats: StatsRecorder,
        *,
        max_batch_size: int,
        image_cache: ImageFeatureCache | None,
        prefix_cache: PrefixCache | None = None,
        prefill_chunk_tokens: int = 0,
        pack_linears: bool = False,
    ) -> None:
        self._loaded = loaded
        self._queue = queue
        self._stats = stats
        self._max_batch_size = max_batch_size
        self._limit = max_batch_size  # lowered after out-of-memory until the running batch drains
        self._image_cache = image_cache
        self._prefix_cache = prefix_cache
        self._pacing = ChunkPacing(prefill_chunk_tokens)
        self._pack_linears = pack_linears
        self._packed_linears: PackedLinears | None = None  # made on the worker's thread, in run()
        self._groups = LengthGroups()  # the running rows, in batches of similar cached length
        self._prefills: list[Prefill] = []  # newcomers whose prompts are being read, oldest first
        self._admitting: list[GenerationRequest] = []
        # Newcomers' prompt KV not yet in the prefix cache: stored in the next slot between two steps,
        # not in the one that joins them (each copy is a stall for the running rows).
        self._pending_stores: list[tuple[tuple[int, ...], tuple, list]] = []

    def run(self) -> None:
        if self._pack_linears:  # packing a big model's weights takes a while: not on the event loop
            try:
                self._packed_linears = packed_linears_for(self._loaded.model)
            except Exception:  # never let the worker die: F.linear serves as well, more slowly
                logger.warning("could not pack the linears; the model's own are used", exc_info=True)
        while True:
            idle = not self._groups and not self._prefills
            work = self._queue.next_work(idle=idle, room=self._room())
            if work is None:
                self._end_running(FinishReason.CANCELLED)
                return
            try:
                self._between_steps(work)
                if self._groups:
                    with self._engine_linears():
                        self._step()
            except BaseException as exc:  # never let the worker die: the next request must still be served
                logger.exception("model worker: unexpected failure")
                self._fail_everything_in_flight(exc)

    def _room(self) -> int:
        rows = self._rows_in_flight()
        if any(row.sink.solo for row in rows):
            return 0
        return max(0, self._limit - len(rows))

    def _rows_in_flight(self) -> list[DecodeRow]:
        """Every row the worker holds: those still reading their prompt, then the running groups'."""
        return [job.row for job in self._prefills] + self._groups.rows

    def _report_running(self) -> None:
        self._stats.running(len(self._groups), len(self._groups.batches))

    def _engine_linears(self) -> contextlib.AbstractContextManager:
        """Decode steps and prompt chunks take the packed multi-row linears, where there are some (scoring
        and setting newcomers up do not: their results are the library's own)."""
        return contextlib.nullcontext() if self._packed_linears is None else self._packed_linears.engaged()

    def _between_steps(self, work: Work) -> None:
        if work.scoring is not None:
            run_scoring_job(self._loaded, work.scoring, self._max_batch_size)
        self._store_pending()
        admitted_s = 0.0
        if work.requests:
            self._admitting = work.requests
            started = time.perf_counter()
            with self._phase("admit"):
                self._admit(work.requests)
            admitted_s = time.perf_counter() - started
            self._admitting = []
        # Setting newcomers up (their images) already took a slot's worth of time: their prompts wait a step.
        if not (self._groups and self._pacing.took_a_slot(admitted_s)):
            with self._engine_linears():
                self._read_prompts()
        self._drop_finished_rows()

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time one phase of the loop into the stats (`phase_total_s`, `phase_max_s`): the profile of a stall."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._stats.phase(name, time.perf_counter() - started)

    def _store_pending(self) -> None:
        if not self._pending_stores or self._prefix_cache is None:
            self._pending_stores = []
            return
        with self._phase("cache_store"):
            for ids, image_keys, kv in self._pending_stores:
                self._prefix_cache.store(ids, image_keys, self._image_token, kv)
        self._pending_stores = []
        self._stats.prefix_cache_size(self._cache_bytes())

    # --- joining ----------------------------------------------------------------------------------

    def _admit(self, requests: list[GenerationRequest]) -> None:
        for request in requests:
            if not self._prepare(request):
                continue
            rows = len(self._rows_in_flight())
            self._stats.batch_built(rows + 1)
            try:
                self._prefills.append(self._start(request))
            except Exception as exc:
                self._prefill_failed(request, exc, rows)

    def _start(self, request: GenerationRequest) -> Prefill:
        loaded = self._loaded
        request.reset_for_run()
        prompt = request.prompt
        row = new_row(loaded, request.params, request, prompt.input_ids, prompt.image_keys)
        latents = image_latents_for(loaded, request.prepared, prompt.image_keys, self._image_cache)
        if self._image_cache is not None:
            self._stats.image_cache(self._image_cache.hits, self._image_cache.misses)
        return start_prefill(loaded, row, request.prepared, latents, self._prefix_cache)

    def _read_prompts(self) -> None:
        """Prefill the newcomers, within the chunk budget while rows are streaming; join finished ones."""
        budget = self._pacing.budget() if self._pacing.chunk_tokens > 0 and self._groups else None
        if budget is None:
            self._read_together([job for job in self._prefills if job.done == 0 and not job.row.sink.cancelled])
        for job in list(self._prefills):
            if budget is not None and budget <= 0:
                break
            if job.row.sink.cancelled:
                self._prefills.remove(job)
                job.row.sink.finish_without_running(FinishReason.CANCELLED)
                continue
            try:
                started = time.perf_counter()
                with self._phase("prefill"):
                    used = advance(self._loaded.model, job, budget)
                self._pacing.read(used, time.perf_counter() - started)
            except Exception as exc:
                self._prefills.remove(job)
                self._prefill_failed(job.row.sink, exc, len(self._rows_in_flight()))
                continue
            if budget is not None:
                budget -= used
            if job.remaining == 0:
                self._prefills.remove(job)
                self._prefilled(job)

    def _read_together(self, jobs: list[Prefill]) -> None:
        """Newcomers with nothing cached, read in one padded pass (nothing is running: no one waits)."""
        if len(jobs) < 2:
            return
        for job in jobs:
            self._prefills.remove(job)
        try:
            with self._phase("prefill"):
                newcomers, events = prefill_together(self._loaded.model, jobs)
        except Exception as exc:
            running = len(self._groups)
            logger.warning("reading %d prompts together failed: %s", len(jobs), exc, exc_info=True)
            self._recover([job.row.sink for job in jobs], exc, batch_size=running + len(jobs))
            return
        for index, job in enumerate(jobs):
            if self._prefix_cache is not None:
                self._pending_stores.append((job.row.prompt_ids, job.row.image_keys, newcomers.row_kv(index)))
            self._stats.prefilled(0, job.length, self._cache_bytes())
        self._deliver(events)
        self._join(newcomers)

    def _prefilled(self, job: Prefill) -> None:
        if self._prefix_cache is not None:  # by the next step: a chat arriving then shares the preamble
            self._pending_stores.append((job.row.prompt_ids, job.row.image_keys, prompt_kv(job)))
        self._stats.prefilled(job.reused, job.length - job.reused, self._cache_bytes())
        newcomer, events = finish_prefill(job)
        self._deliver(events)
        self._join(newcomer)

    def _prefill_failed(self, request: GenerationRequest, exc: Exception, running: int) -> None:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            logger.warning("out of memory starting a request beside %d rows", running)
            self._recover([request], exc, batch_size=running + 1)
        else:
            logger.warning("starting a request failed: %s", exc, exc_info=True)
            self._recover([request], exc, batch_size=1)

    def _join(self, newcomers: RunningBatch) -> None:
        """Newcomers join the group of about their length, or start their own (model/length_groups.py)."""
        group = self._groups.group_for(newcomers)
        if group is None:
            self._groups.add(newcomers)
        else:
            try:
                with self._phase("join"):
                    self._groups.replace(group, concatenate(group, newcomers))
            except Exception as exc:  # a half-joined cache is unusable: every row starts again or fails
                logger.warning("joining %d rows to %d failed: %s", len(newcomers), len(group), exc)
                # `concatenate` may have moved the newcomers' rows over already: each request once.
                requests = list(dict.fromkeys(row.sink for row in group.rows + newcomers.rows))
                self._groups.remove(group)
                self._report_running()
                self._recover(requests, exc, batch_size=len(requests))
                return
        self._report_running()

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
            request.fail(failure(BAD_IMAGE, exc))
            return False
        return True

    @property
    def _image_token(self) -> int:
        return self._loaded.image_token_ids[0]

    def _cache_bytes(self) -> int:
        return 0 if self._prefix_cache is None else self._prefix_cache.bytes_used

    # --- stepping and leaving -----------------------------------------------------------------------

    def _deliver(self, events: Iterable[StepEvent | None]) -> None:
        for event in events:
            if event is not None:
                deliver(event)

    def _drop_finished_rows(self) -> None:
        for group in self._groups:
            self._deliver(row.output.finish(FinishReason.CANCELLED) for row in group.rows if row.sink.cancelled)
            keep = [index for index, row in enumerate(group.rows) if not row.finished]
            if len(keep) < len(group):
                with self._phase("cache_store"):
                    self._keep_answers(group, (index for index in range(len(group)) if index not in keep))
            with self._phase("leave"):
                self._groups.replace(group, filter_rows(group, keep))
        self._merge_groups()
        self._report_running()
        if not self._groups and not self._prefills:
            self._limit = self._max_batch_size

    def _merge_groups(self) -> None:
        try:
            with self._phase("join"):
                self._groups.merge_close()
        except Exception as exc:  # a half-merged cache is unusable: every running row starts again or fails
            logger.warning("merging running groups failed: %s", exc)
            requests = list(dict.fromkeys(row.sink for group in self._groups.clear() for row in group.rows))
            self._recover(requests, exc, batch_size=len(requests))

    def _keep_answers(self, group: RunningBatch, indexes: Iterable[int]) -> None:
        """Leaving rows' prompt and answer KV go to the prefix cache: the conversation's next turn starts so."""
        if self._prefix_cache is None:
            return
        for index in indexes:
            row = group.rows[index]
            kv = group.row_kv(index)
            ids = row.ids_in_cache
            if kv and kv[0][0].shape[1] == len(ids):
                self._prefix_cache.store(ids, row.image_keys, self._image_token, kv)
        self._stats.prefix_cache_size(self._cache_bytes())

    def _step(self) -> None:
        """One tick: a decode step of every group, each one's events delivered as soon as it has them."""
        started = time.perf_counter()
        stepped = False
        for group in self._groups:
            stepped = self._step_group(group) or stepped
        if stepped:  # (after a failed step the lowered limit must stay until the retries have run)
            self._pacing.ticked(time.perf_counter() - started)
            self._stats.phase("step", time.perf_counter() - started)
            # Rows leave as soon as they finish, so the next newcomers' room and batch size are right.
            self._drop_finished_rows()

    def _step_group(self, group: RunningBatch) -> bool:
        try:
            events = step(self._loaded.model, group)  # reads the chosen tokens: the time is the real one
        except torch.cuda.OutOfMemoryError as exc:
            logger.warning("out of memory in a step of %d rows; retrying with fewer", len(group))
            self._abandon_group(group, exc, batch_size=len(self._groups))
            return False
        except Exception as exc:
            logger.warning("a step of %d rows failed: %s", len(group), exc, exc_info=True)
            self._abandon_group(group, exc, batch_size=len(group))
            return False
        self._stats.stepped()
        self._deliver(events)
        return True

    def _abandon_group(self, group: RunningBatch, exc: BaseException, *, batch_size: int) -> None:
        self._groups.remove(group)
        self._report_running()
        self._recover([row.sink for row in group.rows], exc, batch_size=batch_size)

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
                request.fail(failure(OUT_OF_MEMORY if out_of_memory else SOMETHING_WENT_WRONG, exc))
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
        self._deliver(row.output.finish(reason) for row in self._groups.rows)
        for job in self._prefills:
            job.row.sink.finish_without_running(reason)
        self._groups.clear()
        self._prefills = []
        self._stats.running(0)

    def _fail_everything_in_flight(self, exc: BaseException) -> None:
        requests = [row.sink for row in self._groups.rows]
        requests += [job.row.sink for job in self._prefills]
        for request in requests + self._admitting:
            request.fail(failure(SOMETHING_WENT_WRONG, exc))
        self._groups.clear()
        self._prefills = []
        self._admitting = []
        self._stats.running(0)

