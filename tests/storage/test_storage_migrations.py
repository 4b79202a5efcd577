"""Alembic migrations: a blank database, and one made by every revision, reach head intact (on each database).

Each revision has a seeder below that writes rows the way that revision's schema looked (through
reflected tables, not today's models). Adding revision 0002 means adding `seed_0002`; the test
then also proves that a 0001 database with data upgrades through 0002 to head.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, select

from storage.database import create_engine
from storage.images import normalise_image
from storage.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_database,
    upgrade_engine,
)
from storage.schema import Base, User
from storage.store import Store
from storage.types import TurnStatus
from tests.databases import postgresql_only

SEEDED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
# Column types and server defaults count too: the migrated schema must be the models' on every database.
EXACT = {"compare_type": True, "compare_server_default": True}


def all_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def seed_0001(connection: Connection, picture: bytes) -> None:
    tables = MetaData()
    tables.reflect(connection)
    image = normalise_image(picture)
    when = {"first_seen_at": SEEDED_AT, "last_seen_at": SEEDED_AT}
    connection.execute(
        tables.tables["users"].insert(),
        [{"id": 7, "first_name": "Old", "settings": {"mode": "story"}, **when}],
    )
    connection.execute(
        tables.tables["chats"].insert(),
        [{"id": 7, "type": "private", "settings": {"answer_length": "short"}, **when}],
    )
    connection.execute(
        tables.tables["conversations"].insert(),
        [{"id": 70, "chat_id": 7, "user_id": 7, "created_at": SEEDED_AT,
          "last_activity_at": SEEDED_AT, "closed_at": None}],
    )
    connection.execute(
        tables.tables["turns"].insert(),
        [
            {"id": 700, "conversation_id": 70, "position": 0, "role": "user",
             "text": "what is it?", "status": "complete", "created_at": SEEDED_AT},
            {"id": 701, "conversation_id": 70, "position": 1, "role": "assistant",
             "text": "", "status": "pending", "created_at": SEEDED_AT},
        ],
    )
    connection.execute(
        tables.tables["images"].insert(),
        [{"id": 7000, "sha256": image.sha256, "data": image.data, "mime_type": image.mime_type,
          "width": image.width, "height": image.height, "size_bytes": len(image.data),
          "file_unique_id": "old-file", "created_at": SEEDED_AT}],
    )
    connection.execute(
        tables.tables["turn_images"].insert(), [{"turn_id": 700, "position": 0, "image_id": 7000}]
    )
    connection.execute(
        tables.tables["turn_messages"].insert(), [{"chat_id": 7, "message_id": 77, "turn_id": 700}]
    )


def seed_0002(connection: Connection, picture: bytes) -> None:
    """0001's rows (the answer a crash interrupted already failed, as 0002 leaves it), a request
    still waiting in the inbox with the turn written for it, and a claim a dead process held."""
    seed_0001(connection, picture)
    tables = MetaData()
    tables.reflect(connection)
    turns = tables.tables["turns"]
    connection.execute(turns.update().where(turns.c.id == 701).values(status="failed", inbox_item_id=7))
    connection.execute(turns.update().where(turns.c.id == 700).values(inbox_item_id=7))
    connection.execute(
        tables.tables["inbox"].insert(),
        [{"id": 7, "update_id": 9007, "chat_id": 7, "user_id": 7, "kind": "question",
          "payload": {"text": "what is it?"}, "media_group_id": None, "received_at": SEEDED_AT,
          "status": "pending", "outbox": [], "retry_at": None, "done_at": None}],
    )
    connection.execute(
        tables.tables["inbox_claims"].insert(),
        [{"chat_id": 7, "user_id": 7, "holder": "gone:1", "expires_at": SEEDED_AT}],
    )


SEEDERS: dict[str, Callable[[Connection, bytes], None]] = {"0001": seed_0001, "0002": seed_0002}


def test_every_revision_has_a_seeder():
    assert list(SEEDERS) == all_revisions()
    assert all_revisions()[-1] == head_revision()


async def test_upgrade_from_an_empty_database_matches_the_models(database_url):
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) is None
        await upgrade_engine(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts=EXACT), Base.metadata)
            )
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()

    assert differences == []
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


@pytest.mark.parametrize("database_url", postgresql_only(), indirect=True)
async def test_bots_starting_at_once_on_postgresql_migrate_one_at_a_time(database_url):
    """Each engine is a separate server session, as each bot process is: all of them upgrade a blank
    database at the same moment, and every one ends with the schema at head."""
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        upgrades = (upgrade_engine(engine) for engine in engines)
        results = await asyncio.gather(*upgrades, return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert {await current_revision(engine) for engine in engines} == {head_revision()}
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("revision", list(SEEDERS))
async def test_database_made_by_a_revision_upgrades_with_its_data(
    database_url, revision, solid_png
):
    picture = solid_png((30, 60, 90))
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine, revision)
        async with engine.begin() as connection:
            await connection.run_sync(SEEDERS[revision], picture)
    finally:
        await engine.dispose()

    store = Store(database_url)
    await store.start()
    engine = create_engine(database_url)
    try:
        history = await store.history(70)
        assert await current_revision(engine) == head_revision()
        assert [(t.id, t.text, t.status) for t in history] == [
            (700, "what is it?", TurnStatus.COMPLETE),
            (701, "", TurnStatus.FAILED),  # nothing would ever finish an answer 0001 left pending
        ]
        assert history[0].images[0].data == normalise_image(picture).data
        assert history[0].created_at == SEEDED_AT
        assert (await store.turn_for_message(7, 77)).id == 700
        assert (await store.image_for_file("old-file")).id == 7000
        async with engine.connect() as connection:
            assert await connection.scalar(select(User.settings).where(User.id == 7)) == {"mode": "story"}
        assert await store.chat_settings(7) == {"answer_length": "short"}
        assert (await store.active_conversation(7, 7)).id == 70
        added = await store.add_user_turn(70, "and now?")
        assert added.position == 2
        if revision >= "0002":
            [waiting] = [await store.inbox.oldest_waiting(7, 7)]
            assert (waiting.update_id, waiting.payload) == (9007, {"text": "what is it?"})
            assert [turn.id for turn in await store.turns_for_request(7)] == [700, 701]
            assert await store.inbox.ready_conversations("me") == [(7, 7)]  # the dead claim ran out
    finally:
        await engine.dispose()
        await store.stop()


def test_upgrade_database_works_from_any_working_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    upgrade_database("sqlite+aiosqlite:///nested/dir/bot.sqlite3")
    upgrade_database("sqlite+aiosqlite:///nested/dir/bot.sqlite3")  # already at head: no-op

    database = Path(elsewhere / "nested" / "dir" / "bot.sqlite3")
    assert database.is_file()
    import sqlite3

    with sqlite3.connect(database) as connection:
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(head_revision(),)]
