"""Counters the model worker keeps for logs, an admin command and tests, safe to read from any thread."""

from __future__ import annotations

import collections
import dataclasses
import threading
from dataclasses import dataclass, field

from model.types import GenerationResult


@dataclass
class ServiceStats:
    """Counters for logs and an admin command; a copy is handed out, never the live object."""

    finished: collections.Counter = field(default_factory=collections.Counter)  # FinishReason -> count
    batches: int = 0  # prefills started: one per request joining the running batch
    largest_batch: int = 0  # most rows decoded together, newcomers included
    completion_tokens: int = 0
    retries: int = 0
    image_cache_hits: int = 0
    image_cache_misses: int = 0
    steps: int = 0  # decode steps (one forward pass each) over the running batch
    running_rows: int = 0  # rows in the running batch now (finished and cancelled rows leave it)
    running_groups: int = 0  # batches of similar length those rows are in (model/length_groups.py)
    most_groups: int = 0  # the most such batches at once
    prompt_tokens_reused: int = 0  # prompt tokens whose KV came from the prefix cache
    prompt_tokens_computed: int = 0  # prompt tokens prefilled (not found in the prefix cache)
    prefix_cache_bytes_used: int = 0  # what the prefix cache holds now
    # Seconds the worker spent in each phase of its loop (admit, prefill, cache_store, join, leave, step):
    # the total, and the longest single time — what a running row waits for between two tokens.
    phase_total_s: dict = field(default_factory=dict)
    phase_max_s: dict = field(default_factory=dict)


class StatsRecorder:
    """The live `ServiceStats` behind a lock; the worker writes, anyone takes a `snapshot()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ServiceStats()

    def snapshot(self) -> ServiceStats:
        with self._lock:
            return dataclasses.replace(
                self._stats,
                finished=collections.Counter(self._stats.finished),
                phase_total_s=dict(self._stats.phase_total_s),
                phase_max_s=dict(self._stats.phase_max_s),
            )

    def finished(self, result: GenerationResult) -> None:
        with self._lock:
            self._stats.finished[result.finish_reason] += 1
            self._stats.completion_tokens += result.completion_tokens

    def batch_built(self, rows_after_joining: int) -> None:
        with self._lock:
            self._stats.batches += 1
            self._stats.largest_batch = max(self._stats.largest_batch, rows_after_joining)

    def phase(self, name: str, seconds: float) -> None:
        with self._lock:
            totals, worst = self._stats.phase_total_s, self._stats.phase_max_s
            totals[name] = totals.get(name, 0.0) + seconds
            worst[name] = max(worst.get(name, 0.0), seconds)

    def running(self, rows: int, groups: int = 0) -> None:
        with self._lock:
            self._stats.running_rows = rows
            self._stats.running_groups = groups
            self._stats.most_groups = max(self._stats.most_groups, groups)

    def stepped(self) -> None:
        with self._lock:
            self._stats.steps += 1

    def retried(self) -> None:
        with self._lock:
            self._stats.retries += 1

    def prefilled(self, reused: int, computed: int, cache_bytes: int) -> None:
        with self._lock:
            self._stats.prompt_tokens_reused += reused
            self._stats.prompt_tokens_computed += computed
            self._stats.prefix_cache_bytes_used = cache_bytes

    def prefix_cache_size(self, cache_bytes: int) -> None:
        with self._lock:
            self._stats.prefix_cache_bytes_used = cache_bytes

    def image_cache(self, hits: int, misses: int) -> None:
        with self._lock:
            self._stats.image_cache_hits = hits
            self._stats.image_cache_misses = misses
