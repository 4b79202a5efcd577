"""One answer at a time per conversation: later messages wait their turn, in the order they arrived.

Jobs run as tasks this queue owns rather than inside PTB's update handlers. That keeps one user's long
answer from holding up anyone else, lets `/cancel` stop exactly the running job, and lets shutdown cancel
and record every in-flight answer *before* PTB's `Application.stop()` (which waits for handlers).

Order is fixed when `submit()` is called: the inbox (`bot.inbox`) calls it before a handler's first
`await`, and PTB starts handler tasks in update order, so a conversation's jobs run in the order its
messages arrived. This is the local scheduler only: what is still to be done lives in the database's
inbox, and each job works on the conversation's oldest waiting request there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.errors import NotReady

log = logging.getLogger(__name__)

# Passed as the CancelledError message so a job can tell the person why it stopped.
CANCEL_BY_USER = "cancelled by the user"
CANCEL_BY_SHUTDOWN = "cancelled by shutdown"
CANCEL_BY_FORGET = "cancelled because the user's data is being erased"


@dataclass(frozen=True)
class ConversationKey:
    """Whose conversation a message belongs to: each member of a group has their own."""

    chat_id: int
    user_id: int


@dataclass(eq=False)
class _Job:
    key: ConversationKey
    task: asyncio.Task | None = None
    started: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ConversationQueue:
    """Per-conversation FIFO of jobs, each an `async () -> None`; different conversations run concurrently."""

    def __init__(self) -> None:
        self._jobs: dict[ConversationKey, list[_Job]] = {}
        self._closed = False

    def submit(
        self, key: ConversationKey, work: Callable[[], Awaitable[None]], *, name: str = "answer"
    ) -> asyncio.Task:
        """Queue `work` behind the conversation's earlier jobs; returns the task that will run it."""
        if self._closed:
            raise NotReady("the bot is shutting down")
        waiting_for = [job.done for job in self._jobs.get(key, [])]
        job = _Job(key)
        self._jobs.setdefault(key, []).append(job)
        job.task = asyncio.create_task(
            self._run(job, waiting_for, work), name=f"{name}:{key.chat_id}:{key.user_id}"
        )
        return job.task

    async def _run(
        self, job: _Job, waiting_for: list[asyncio.Event], work: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            for earlier in waiting_for:
                await earlier.wait()
            job.started = True
            await work()
        except asyncio.CancelledError:
            if not job.started:
                log.info("a queued message for chat %s was dropped before its turn", job.key.chat_id)
            raise
        except Exception:  # the job's own error handling failed; never let it kill the queue
            log.exception("an answer job for chat %s failed", job.key.chat_id)
        finally:
            job.done.set()
            jobs = self._jobs.get(job.key, [])
            if job in jobs:
                jobs.remove(job)
            if not jobs:
                self._jobs.pop(job.key, None)

    @property
    def closed(self) -> bool:
        return self._closed

    def has_waiting(self, key: ConversationKey) -> bool:
        """Whether a job for this conversation is queued and has not started yet."""
        return any(not job.started for job in self._jobs.get(key, []))

    def has_jobs(self, key: ConversationKey) -> bool:
        return bool(self._jobs.get(key))

    def running(self, key: ConversationKey) -> asyncio.Task | None:
        """The job currently running for this conversation, if any."""
        for job in self._jobs.get(key, []):
            if job.started and job.task is not None and not job.task.done():
                return job.task
        return None

    def cancel_running(self, key: ConversationKey) -> bool:
        """Cancel the job that is running for this conversation (queued ones keep their turn)."""
        task = self.running(key)
        if task is None:
            return False
        task.cancel(CANCEL_BY_USER)
        return True

    async def cancel_user(self, user_id: int) -> int:
        """Cancel every running and queued job of one user, in every chat, and wait for them to wind down."""
        tasks = [
            job.task for key, jobs in self._jobs.items() if key.user_id == user_id for job in jobs if job.task
        ]
        return await self._cancel_and_wait(tasks, CANCEL_BY_FORGET)

    async def shutdown(self) -> int:
        """Refuse new jobs, cancel all the others and wait until each has recorded how it ended."""
        self._closed = True
        tasks = [job.task for jobs in self._jobs.values() for job in jobs if job.task]
        return await self._cancel_and_wait(tasks, CANCEL_BY_SHUTDOWN)

    def pending_count(self) -> int:
        return sum(len(jobs) for jobs in self._jobs.values())

    def running_count(self) -> int:
        """Jobs that have started and not yet ended (the rest of `pending_count` waits its turn)."""
        return sum(job.started for jobs in self._jobs.values() for job in jobs)

    def waiting_count(self) -> int:
        return self.pending_count() - self.running_count()

    @staticmethod
    async def _cancel_and_wait(tasks: list[asyncio.Task], reason: str) -> int:
        live = [task for task in tasks if not task.done()]
        for task in live:
            task.cancel(reason)
        if live:
            await asyncio.gather(*live, return_exceptions=True)
        return len(live)
