"""The queue between the event loop and the model worker: requests wait here until the worker takes them.

The worker asks for work between decode steps. While it has rows running it only polls (never waits);
when idle it sleeps until something arrives, then holds the oldest request up to `batch_window_s` so
that requests sent together start together. Requests that are being retried alone after a failure
(`solo`) keep their place in line, start only on an idle worker, and run with nobody beside them.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from model.errors import ServiceStopped
from model.requests import GenerationRequest, ScoringJob
from model.types import FinishReason

Job = GenerationRequest | ScoringJob


@dataclass
class Work:
    """What the worker should do before its next step."""

    scoring: ScoringJob | None = None
    requests: list[GenerationRequest] = field(default_factory=list)


class WorkQueue:
    def __init__(self, batch_window_s: float) -> None:
        self._batch_window_s = batch_window_s
        self._pending: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise ServiceStopped("The model service stopped before this request could run.")
            job.enqueued_at = time.monotonic()
            self._pending.append(job)
            self._cond.notify_all()

    def put_back(self, requests: Iterable[GenerationRequest]) -> None:
        """Return requests to the front of the line (a retry), in their original order."""
        with self._cond:
            self._pending.extendleft(reversed(list(requests)))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Job]:
        """Everything still waiting, removed from the queue (after `close`, to be abandoned)."""
        with self._cond:
            leftovers = list(self._pending)
            self._pending.clear()
        return leftovers

    def next_work(self, *, idle: bool, room: int) -> Work | None:
        """Jobs to start now, at most `room` generation requests; None once the queue is closed."""
        with self._cond:
            if idle:
                self._wait_for_a_batch(room)
            if self._closed:
                return None
            self._drop_cancelled()
            scoring = next((job for job in self._pending if isinstance(job, ScoringJob)), None)
            if scoring is not None:
                self._pending.remove(scoring)
            return Work(scoring=scoring, requests=self._take_requests(room, idle))

    def _wait_for_a_batch(self, room: int) -> None:
        while not self._pending and not self._closed:
            self._cond.wait()
        # After a long batch the queue has usually waited that long already and goes at once.
        deadline = self._pending[0].enqueued_at + self._batch_window_s if self._pending else 0.0
        while len(self._pending) < room and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _drop_cancelled(self) -> None:
        for job in [job for job in self._pending if isinstance(job, GenerationRequest) and job.cancelled]:
            self._pending.remove(job)
            job.finish_without_running(FinishReason.CANCELLED)

    def _take_requests(self, room: int, idle: bool) -> list[GenerationRequest]:
        taken: list[GenerationRequest] = []
        for job in self._pending:
            if len(taken) >= room:
                break
            if not isinstance(job, GenerationRequest):
                continue
            if job.solo:
                if idle and not taken:
                    taken.append(job)
                break
            taken.append(job)
        for job in taken:
            self._pending.remove(job)
        return taken
