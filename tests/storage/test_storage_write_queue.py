"""One process's SQLite writes queue in the order they came, and a wait past the lock timeout is
"unavailable", even when the writer holding the lock is in this process."""

from __future__ import annotations

import asyncio

import pytest

from storage.database import create_engine
from storage.errors import DatabaseUnavailable
from storage.migrations import upgrade_engine
from storage.schema import User, utc_now
from storage.sessions import Transactions


@pytest.fixture
async def transactions(tmp_path, request):
    lock_timeout_s = request.param
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'queue.sqlite3'}", lock_timeout_s=lock_timeout_s)
    await upgrade_engine(engine)
    try:
        yield Transactions(engine, lock_timeout_s=lock_timeout_s)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("transactions", [10.0], indirect=True)
async def test_a_crowd_of_writers_is_served_in_the_order_it_came_none_timing_out(transactions):
    order: list[int] = []

    def add(user_id: int):
        async def work(session) -> None:
            now = utc_now()
            session.add(User(id=user_id, first_name="x", settings={}, first_seen_at=now, last_seen_at=now))
            await session.flush()
            order.append(user_id)

        return work

    # 100 writers at once: each waits only for the ones before it, none starves behind later ones.
    await asyncio.gather(*(transactions.write(add(n)) for n in range(1, 101)))
    assert order == list(range(1, 101))


@pytest.mark.parametrize("transactions", [0.3], indirect=True)
async def test_a_write_queued_past_the_lock_timeout_says_the_database_is_unavailable(transactions):
    holding = asyncio.Event()

    async def slow(session) -> None:
        holding.set()
        await asyncio.sleep(1.0)  # a writer of this process keeps the lock past the others' timeout

    first = asyncio.create_task(transactions.write(slow))
    await holding.wait()
    with pytest.raises(DatabaseUnavailable, match="locked"):
        await transactions.write(lambda session: asyncio.sleep(0))
    await first
