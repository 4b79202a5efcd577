"""One process's SQLite writes queue in the order they came, and a wait past the lock timeout is
"unavailable", even when the writer ahead of it is in this process."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from storage.database import create_engine, create_store_engine, dispose
from storage.errors import DatabaseUnavailable
from storage.migrations import upgrade_engine
from storage.schema import User, utc_now
from storage.sessions import Transactions


@pytest.fixture
async def path(tmp_path):
    path = tmp_path / "queue.sqlite3"
    migrating = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_engine(migrating)
    await migrating.dispose()
    return path


@pytest.fixture
async def transactions(path, request):
    lock_timeout_s = request.param
    engine = create_store_engine(f"sqlite+aiosqlite:///{path}", lock_timeout_s=lock_timeout_s)
    try:
        yield Transactions(engine, lock_timeout_s=lock_timeout_s)
    finally:
        await dispose(engine)


def add_user(user_id: int, added: list[int] | None = None):
    def work(session) -> None:
        now = utc_now()
        session.add(User(id=user_id, first_name="x", settings={}, first_seen_at=now, last_seen_at=now))
        session.flush()
        if added is not None:
            added.append(user_id)

    return work


@pytest.mark.parametrize("transactions", [10.0], indirect=True)
async def test_a_crowd_of_writers_is_served_in_the_order_it_came_none_timing_out(transactions):
    order: list[int] = []
    # 100 writers at once: each waits only for the ones before it, none starves behind later ones.
    await asyncio.gather(*(transactions.write(add_user(n, order)) for n in range(1, 101)))
    assert order == list(range(1, 101))


@pytest.mark.parametrize("transactions", [0.3], indirect=True)
async def test_a_write_queued_past_the_lock_timeout_says_the_database_is_unavailable(path, transactions):
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the lock: this process's writers wait
    try:
        # The first waits for the lock, the second for the first and then for the lock: each up to
        # the timeout. The third is still queued behind them when its own wait runs out.
        first, second, third = await asyncio.gather(
            *(transactions.write(add_user(n)) for n in (1, 2, 3)), return_exceptions=True
        )
    finally:
        holder.rollback()
        holder.close()
    assert isinstance(first, DatabaseUnavailable) and "locked" in str(first)
    assert isinstance(second, DatabaseUnavailable) and "locked" in str(second)
    assert isinstance(third, DatabaseUnavailable) and "this process's other writes" in str(third)
    await transactions.write(add_user(4))  # the queue moves again once the lock is free
