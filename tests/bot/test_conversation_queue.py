"""The per-conversation queue: arrival order within a conversation, independence across them, cancelling."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation_queue import CANCEL_BY_SHUTDOWN, CANCEL_BY_USER, ConversationKey, ConversationQueue
from bot.errors import NotReady

ANN = ConversationKey(chat_id=1, user_id=1)
BOB = ConversationKey(chat_id=2, user_id=2)


async def test_jobs_of_one_conversation_run_one_at_a_time_in_submission_order():
    queue, log = ConversationQueue(), []

    def job(name: str, delay: float):
        async def work() -> None:
            log.append(f"start {name}")
            await asyncio.sleep(delay)
            log.append(f"end {name}")

        return work

    tasks = [
        queue.submit(ANN, job("a", 0.05)),
        queue.submit(ANN, job("b", 0)),
        queue.submit(ANN, job("c", 0)),
    ]
    await asyncio.gather(*tasks)
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert queue.pending_count() == 0


async def test_other_conversations_do_not_wait():
    queue, release = ConversationQueue(), asyncio.Event()
    ann = queue.submit(ANN, release.wait)
    bob = queue.submit(BOB, lambda: asyncio.sleep(0))
    await asyncio.wait_for(bob, 1)
    assert queue.running(ANN) is not None
    release.set()
    await ann


async def test_cancel_running_stops_only_the_running_job_and_tells_it_why():
    queue, reasons, ran = ConversationQueue(), [], []

    async def long_job() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as cancel:
            reasons.append(cancel.args[0])
            raise

    async def next_job() -> None:
        ran.append("next")

    first = queue.submit(ANN, long_job)
    second = queue.submit(ANN, next_job)
    await asyncio.sleep(0.01)
    assert queue.cancel_running(ANN)
    await asyncio.gather(first, second, return_exceptions=True)
    assert reasons == [CANCEL_BY_USER] and ran == ["next"]
    assert not queue.cancel_running(ANN)


async def test_shutdown_cancels_everything_and_refuses_new_jobs():
    queue, reasons = ConversationQueue(), []

    async def long_job() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as cancel:
            reasons.append(cancel.args[0])
            raise

    queue.submit(ANN, long_job)
    queue.submit(BOB, long_job)
    await asyncio.sleep(0.01)
    assert await queue.shutdown() == 2
    assert reasons == [CANCEL_BY_SHUTDOWN, CANCEL_BY_SHUTDOWN]
    with pytest.raises(NotReady):
        queue.submit(ANN, long_job)
