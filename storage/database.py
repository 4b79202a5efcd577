"""Engine setup: the only place that knows which database dialect is behind the URL.

SQLite gets WAL, foreign keys and a busy timeout on every connection, and SQLAlchemy (not the
sqlite3 driver) emits BEGIN: write transactions start with BEGIN IMMEDIATE so they take the write
lock up front and queue on the busy timeout. A deferred transaction that reads and then writes
cannot wait for the lock in WAL mode (SQLITE_BUSY_SNAPSHOT): it fails at once with
"database is locked", which is what many concurrent bot tasks would otherwise see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/idefics-bot.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that marks a read-only session; its transactions begin deferred on SQLite.
READ_ONLY_OPTION = "idefics_read_only"


# People paste the URLs they know; the engine is async, so the plain dialects get their async driver.
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def with_async_driver(database_url: str) -> URL:
    """The URL, with an async driver where it names only a dialect (`sqlite:///x`, `postgresql://…`)."""
    url = make_url(database_url)
    if url.drivername in ASYNC_DRIVERS:
        url = url.set(drivername=ASYNC_DRIVERS[url.drivername])
    return url


def create_engine(database_url: str = DEFAULT_DATABASE_URL) -> AsyncEngine:
    """An async engine for the URL; for a SQLite file, its folder is created if missing."""
    url = with_async_driver(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    _create_sqlite_parent_dir(url)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _configure_sqlite(engine)
    return engine


def sessionmakers(engine: AsyncEngine) -> tuple[async_sessionmaker, async_sessionmaker]:
    """(writer, reader) session factories; use the reader for transactions that never write."""
    writer = async_sessionmaker(engine, expire_on_commit=False)
    reader = async_sessionmaker(
        engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
    )
    return writer, reader


def is_sqlite(connection: Connection) -> bool:
    return connection.dialect.name == "sqlite"


@contextlib.contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Turn SQLite's FK enforcement off around a migration, outside any transaction.

    Alembic's batch mode rebuilds a table by drop-and-rename; with enforcement on, dropping a
    parent table would cascade-delete its children's rows. The pragma is a no-op inside a
    transaction, so it goes straight to the driver before SQLAlchemy begins one.
    """
    if not is_sqlite(connection):
        yield
        return
    _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(pragma)
    finally:
        cursor.close()


def _create_sqlite_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Hand BEGIN over to SQLAlchemy (the documented recipe), then set per-connection pragmas.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
