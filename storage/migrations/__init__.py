"""Runs the Alembic migrations in this folder from code, wherever the package is installed.

The bot upgrades at start through `upgrade_engine` on its own engine; the `idefics-bot migrate`
command calls the synchronous `upgrade_database`. Neither needs an alembic.ini or a particular
working directory: the script location is found next to this file.

Several bot processes may start at once on one PostgreSQL database. On PostgreSQL the upgrade runs
under a transaction-level advisory lock, so one process migrates while the others wait, and then find
the schema at head and have nothing to do (without it, two would create the same tables at once and
one would fail). SQLite needs no such lock: a bot on SQLite is one process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.database import create_engine, sqlite_foreign_keys_off

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Any fixed 64-bit key our application alone uses for pg_advisory_xact_lock.
MIGRATION_LOCK_KEY = 0x1DEF1C5_B07
# A process waiting for another's migration waits this long, whatever the lock timeout of its writes.
MIGRATION_LOCK_WAIT = "10min"


def alembic_config() -> Config:
    """An in-memory Alembic config pointing at the packaged migrations."""
    config = Config()
    # ConfigParser treats % as interpolation, and install paths may contain one.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the engine's database to `revision` (default: the newest), committing the result."""
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade_on_connection, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for a database Alembic never touched."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Synchronous entry point for the CLI; must not be called from a running event loop."""
    asyncio.run(_upgrade_url(database_url, revision))


async def _upgrade_url(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


def _upgrade_on_connection(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with sqlite_foreign_keys_off(connection):
        _lock_out_other_migrations(connection)
        command.upgrade(config, revision)
        connection.commit()


def _lock_out_other_migrations(connection: Connection) -> None:
    """On PostgreSQL, wait until no other process is migrating; the lock ends with the commit."""
    if connection.dialect.name != "postgresql":
        return
    connection.execute(text(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT}'"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
