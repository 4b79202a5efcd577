"""DATABASE_URL as people write it: plain dialect URLs get the async driver the store needs."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from storage.database import with_async_driver
from storage.store import Store


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///data/bot.sqlite3", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///data/bot.sqlite3", "sqlite+aiosqlite"),
        ("postgresql://bot:secret@db/bot", "postgresql+asyncpg"),
        ("postgres://bot:secret@db/bot", "postgresql+asyncpg"),
        ("postgresql+psycopg://bot:secret@db/bot", "postgresql+psycopg"),
    ],
)
def test_plain_dialect_urls_get_an_async_driver(given, driver):
    url = with_async_driver(given)
    assert url.drivername == driver
    assert url.database == make_url(given).database


async def test_a_plain_sqlite_url_works_end_to_end_and_creates_its_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'bot.sqlite3'}"
    async with Store(url) as store:
        conversation = await store.active_conversation(1, 1)
        await store.add_user_turn(conversation.id, "hello")
    async with Store(url) as store:
        [turn] = await store.history((await store.active_conversation(1, 1)).id)
    assert turn.text == "hello"
    assert (tmp_path / "nested" / "bot.sqlite3").exists()
