"""Requests handed to the inbox together (the handlers of one getUpdates batch) are stored in one
transaction; each caller hears about its own request, and a batch the database can't take stores
none of them and tells every caller so."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import event

from storage.errors import DatabaseUnavailable
from storage.schema import utc_now
from storage.store import Store
from storage.types import NewRequest


def request(update_id: int, user_id: int | None = None) -> NewRequest:
    user = user_id if user_id is not None else update_id
    return NewRequest(update_id, user, user, "question", {"text": f"from {user}"}, utc_now())


def commits_of(store: Store) -> list[int]:
    commits: list[int] = []
    event.listen(store._started().sync_engine, "commit", lambda connection: commits.append(1))
    return commits


async def test_requests_handed_in_together_are_stored_in_one_transaction(store):
    commits = commits_of(store)
    batch = [request(n) for n in range(100, 120)] + [request(105)]  # Telegram sent one twice
    stored = await asyncio.gather(*(store.inbox.add(new) for new in batch))

    assert len(commits) == 1
    assert [row.update_id for row in stored[:20]] == list(range(100, 120)) and stored[20] is None
    assert len({row.id for row in stored[:20]}) == 20
    for user in range(100, 120):
        waiting = await store.inbox.oldest_waiting(user, user)
        assert (waiting.update_id, waiting.payload) == (user, {"text": f"from {user}"})
    assert await store.inbox.add(request(110)) is None, "a later redelivery is still recognised"


async def test_requests_handed_in_one_after_another_are_each_stored_at_once(store):
    for n in range(3):
        assert (await store.inbox.add(request(200 + n))).update_id == 200 + n
    assert [(await store.inbox.oldest_waiting(200 + n, 200 + n)).update_id for n in range(3)] == [200, 201, 202]


async def test_a_batch_the_database_cannot_take_stores_none_and_tells_every_caller(tmp_path):
    path = tmp_path / "held.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}", lock_timeout_s=0.3) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock past the timeout
        try:
            outcomes = await asyncio.gather(
                *(store.inbox.add(request(n)) for n in range(300, 305)), return_exceptions=True
            )
        finally:
            holder.rollback()
            holder.close()
        assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes), outcomes
        assert await store.inbox.waiting_count() == 0

        stored = await asyncio.gather(*(store.inbox.add(request(n)) for n in range(300, 305)))
        assert [row.update_id for row in stored] == list(range(300, 305)), "sent again, all are stored"


async def test_a_caller_that_gives_up_leaves_its_batch_stored(store):
    adds = [asyncio.ensure_future(store.inbox.add(request(n))) for n in range(400, 405)]
    await asyncio.sleep(0)
    adds[0].cancel()
    stored = await asyncio.gather(*adds[1:])
    assert [row.update_id for row in stored] == list(range(401, 405))
    with pytest.raises(asyncio.CancelledError):
        await adds[0]
    # Its own row is written too: the update, not confirmed, comes again and is recognised.
    assert await store.inbox.waiting_count() == 5
    assert await store.inbox.add(request(400)) is None
