"""A database that can't take a write right now (locked too long, full) is told apart from a bug."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import event

from storage.database import create_engine, create_store_engine, dispose
from storage.errors import DatabaseUnavailable
from storage.migrations import upgrade_engine
from storage.schema import User, utc_now
from storage.sessions import Transactions
from storage.store import Store
from storage.types import ChatInfo, UserInfo


async def test_a_write_that_waits_past_the_lock_timeout_says_the_database_is_unavailable(tmp_path):
    path = tmp_path / "locked.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}", lock_timeout_s=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseUnavailable):
                await store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
            assert (await store.stats()).users == 0, "reads still work"
        finally:
            holder.rollback()
            holder.close()
        await store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
        assert (await store.stats()).users == 1


async def test_a_full_disk_says_the_database_is_unavailable(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'full.sqlite3'}"
    migrating = create_engine(url)
    await upgrade_engine(migrating)
    await migrating.dispose()
    engine = create_store_engine(url)

    @event.listens_for(engine, "connect")
    def _no_room_left(dbapi_connection, record):  # the file may not grow any more
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count={pages}")
        cursor.close()

    transactions = Transactions(engine)

    def fill(session) -> None:
        now = utc_now()
        session.add_all(
            User(id=n, first_name="x" * 200, settings={}, first_seen_at=now, last_seen_at=now)
            for n in range(2000)
        )

    try:
        with pytest.raises(DatabaseUnavailable, match="full"):
            await transactions.write(fill)
    finally:
        await dispose(engine)
