"""The store's SQLite transactions run on the event loop's thread (the long ones, erasures and the
retention purge, on a worker thread), and a write lock another program holds is waited for without
stopping the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from storage.errors import DatabaseUnavailable
from storage.sqlite_driver import BLOCKING_BUSY_WAIT_MS
from storage.store import Store
from storage.types import ChatInfo, UserInfo


async def test_statements_run_on_the_event_loops_thread(tmp_path):
    def thread_of_statements(session) -> int:
        session.connection().connection.dbapi_connection.create_function("thread_id", 0, threading.get_ident)
        return session.scalar(text("SELECT thread_id()"))

    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'inline.sqlite3'}") as store:
        ran_on_for_reads = await store._started().read(thread_of_statements)
        ran_on_for_writes = await store._started().write(thread_of_statements)
    assert ran_on_for_reads == ran_on_for_writes == threading.get_ident()


async def test_a_long_write_runs_off_the_loop_while_reads_go_on_and_writes_wait_their_turn(tmp_path):
    read_done = threading.Event()
    order: list[str] = []

    def long_write(session) -> bool:
        session.execute(text("CREATE TABLE t (x)"))
        # On the loop's thread this would wait for a read that could never run.
        went_on = read_done.wait(timeout=5)
        order.append("long")
        return went_on

    def short_write(session) -> None:
        order.append("short")

    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'long.sqlite3'}") as store:
        transactions = store._started()
        long = asyncio.create_task(transactions.write(long_write, off_loop=True))
        await asyncio.sleep(0.05)
        short = asyncio.create_task(transactions.write(short_write))
        assert (await store.stats()).users == 0  # a read while the long write runs
        read_done.set()
        assert await long
        await short
    assert order == ["long", "short"]


async def test_an_erasure_and_the_retention_purge_delete_off_the_loops_thread(tmp_path, monkeypatch):
    from storage import cleanup

    threads: list[int] = []
    for name in ("forget_user_rows", "purge_conversations_idle_since"):
        real = getattr(cleanup, name)
        monkeypatch.setattr(cleanup, name, lambda *args, real=real: threads.append(threading.get_ident()) or real(*args))
    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'erase.sqlite3'}") as store:
        await store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
        await store.purge_idle(timedelta(days=1))
        assert await store.forget_user(1) > 0
        assert (await store.stats()).users == 0
    assert len(threads) == 2 and threading.get_ident() not in threads


async def test_a_write_waits_for_another_programs_lock_while_the_loop_goes_on(tmp_path):
    path = tmp_path / "held.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}", lock_timeout_s=10.0) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        gaps: list[float] = []

        async def tick() -> None:  # what every other task of the bot sees: how long the loop stalls
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.002)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        write = asyncio.create_task(store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private")))
        await asyncio.sleep(0.6)
        assert not write.done(), "the write went through while the lock was held"
        holder.rollback()
        holder.close()
        await asyncio.wait_for(write, 5)
        ticker.cancel()
        assert (await store.stats()).users == 1
    # A stall is one blocking call's busy wait at most (with room for a busy machine), never the hold.
    assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.3f} s"
    assert len(gaps) > 0.6 / (0.002 + 2 * BLOCKING_BUSY_WAIT_MS / 1000)


async def test_past_the_lock_timeout_the_write_says_the_database_is_unavailable(tmp_path):
    path = tmp_path / "timeout.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}", lock_timeout_s=0.3) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        try:
            with pytest.raises(DatabaseUnavailable, match="locked"):
                await store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
        finally:
            holder.rollback()
            holder.close()
    assert 0.25 < time.monotonic() - started < 2.0
