"""Many tasks writing at once: nothing lost, order kept, and SQLite never says "locked"."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict

import pytest
from sqlalchemy import select, text

from storage.database import create_engine, sessionmakers
from storage.schema import User
from storage.store import Store
from storage.types import ChatInfo, TurnStatus, UserInfo

TASKS = 100
CONVERSATIONS = 20
EXCHANGES_PER_TASK = 2


async def test_concurrent_appends_lose_nothing_and_keep_order(store):
    conversations = [
        await store.active_conversation(-1000, user_id) for user_id in range(CONVERSATIONS)
    ]

    async def converse(task: int) -> None:
        # Each task talks in one conversation, one exchange after another, as a user would.
        conversation_id = conversations[task % CONVERSATIONS].id
        for exchange in range(EXCHANGES_PER_TASK):
            user = UserInfo(task % CONVERSATIONS, f"user {task}")
            await store.touch(user, ChatInfo(-1000, "group"))
            await store.add_user_turn(conversation_id, f"task {task} asks {exchange}")
            answer = await store.open_assistant_turn(conversation_id)
            await store.close_assistant_turn(
                answer.id, TurnStatus.COMPLETE, f"task {task} answer {exchange}"
            )

    await asyncio.gather(*(converse(task) for task in range(TASKS)))

    seen_texts = set()
    for conversation in conversations:
        history = await store.history(conversation.id)
        per_conversation = TASKS // CONVERSATIONS * EXCHANGES_PER_TASK * 2
        assert [turn.position for turn in history] == list(range(per_conversation))
        asked_by_task: dict[str, list[int]] = defaultdict(list)
        for turn in history:
            task, _, exchange = turn.text.rsplit(" ", 2)
            asked_by_task[task].append(int(exchange))
        assert all(order == sorted(order) for order in asked_by_task.values())
        seen_texts.update(turn.text for turn in history)
    expected = {
        f"task {task} {kind} {exchange}"
        for task in range(TASKS)
        for exchange in range(EXCHANGES_PER_TASK)
        for kind in ("asks", "answer")
    }
    assert seen_texts == expected
    stats = await store.stats()
    assert stats.turns == len(expected)
    assert stats.turns_by_status == {"complete": len(expected)}


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """These tests are about SQLite's engine setup itself, so they always use SQLite."""
    return f"sqlite+aiosqlite:///{tmp_path / 'engine.sqlite3'}"


async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()

    assert pragmas["journal_mode"] == "wal"
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] >= 5000


async def test_a_write_transaction_holds_the_write_lock_from_its_first_read(sqlite_url):
    # A deferred transaction that reads and then writes cannot wait for the lock in WAL mode;
    # taking it at BEGIN (IMMEDIATE) is what lets writers queue instead of failing.
    store = Store(sqlite_url)
    await store.start()
    engine = create_engine(sqlite_url)
    writer, reader = sessionmakers(engine)
    try:
        async with writer() as session, session.begin():
            await session.scalar(select(User).limit(1))
            assert _other_writer_is_locked_out(sqlite_url)
        async with reader() as session, session.begin():
            await session.scalar(select(User).limit(1))
            assert not _other_writer_is_locked_out(sqlite_url)
    finally:
        await engine.dispose()
        await store.stop()


def _other_writer_is_locked_out(sqlite_url: str) -> bool:
    path = sqlite_url.split("///", 1)[1]
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return True
    finally:
        other.close()


async def test_default_url_creates_the_data_folder_under_the_working_directory(
    tmp_path, monkeypatch
):
    from storage.database import DEFAULT_DATABASE_URL

    monkeypatch.chdir(tmp_path)
    store = Store(DEFAULT_DATABASE_URL)
    await store.start()
    try:
        await store.active_conversation(1, 1)
    finally:
        await store.stop()

    assert (tmp_path / "data" / "idefics-bot.sqlite3").is_file()


async def test_foreign_keys_are_enforced(sqlite_url):
    store = Store(sqlite_url)
    await store.start()
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(Exception, match="FOREIGN KEY"):
                await connection.execute(
                    text("INSERT INTO conversations (chat_id, user_id, created_at, "
                         "last_activity_at) VALUES (1, 1, '2026-01-01', '2026-01-01')")
                )
    finally:
        await engine.dispose()
        await store.stop()
