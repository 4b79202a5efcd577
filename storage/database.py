"""Engine setup: the only place that knows which database dialect is behind the URL.

The store's transactions run on `create_store_engine`'s engine: for SQLite a synchronous one called
on the event loop's thread (`storage.sqlite_driver`), for other databases the async engine that
`create_engine` makes (and the schema upgrade uses for every database).

SQLite gets WAL, foreign keys, `secure_delete` and a busy timeout on every connection, and
SQLAlchemy (not the sqlite3 driver) emits BEGIN: write transactions start with BEGIN IMMEDIATE so
they take the write lock up front and queue on the busy timeout. A deferred transaction that reads
and then writes cannot wait for the lock in WAL mode (SQLITE_BUSY_SNAPSHOT): it fails at once with
"database is locked", which is what many concurrent bot tasks would otherwise see.

The database holds people's words and pictures, so a SQLite file is private to the bot's user
whatever the umask: the folders made for it are 0700 and the file 0600 before SQLite opens it
(SQLite gives its -wal and -shm files the database file's mode). `erase_traces` makes deleted rows
unreadable in every file: `secure_delete` zeroes them in the pages, a TRUNCATE checkpoint copies
those pages into the database file and empties the write-ahead log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from storage.sqlite_driver import BLOCKING_BUSY_WAIT_MS, loop_thread_engine

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/idefics-bot.sqlite3"
DEFAULT_LOCK_TIMEOUT_S = 10.0  # how long a write waits for another's lock before giving up
PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
CHECKPOINT_ATTEMPTS = 20
CHECKPOINT_RETRY_S = 0.1
CHECKPOINT = "PRAGMA wal_checkpoint(TRUNCATE)"

# Execution option that marks a read-only session; its transactions begin deferred on SQLite.
READ_ONLY_OPTION = "idefics_read_only"


# People paste the URLs they know; DATABASE_URL names an async driver (the store's SQLite engine
# swaps in pysqlite itself), so the plain dialects get theirs.
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


def create_engine(
    database_url: str = DEFAULT_DATABASE_URL, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> AsyncEngine:
    """An async engine for the URL (a SQLite file waits for a lock inside its driver's thread, up to
    the lock timeout); a SQLite file (and its folder) is created private if missing."""
    url = with_async_driver(database_url)
    if url.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() == "asyncpg":
            connect_args["server_settings"] = {"lock_timeout": str(int(lock_timeout_s * 1000))}
        return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)
    _prepare_private_sqlite_file(url)
    engine = create_async_engine(url, connect_args={"timeout": lock_timeout_s})
    _configure_sqlite(engine.sync_engine, busy_timeout_ms=int(lock_timeout_s * 1000))
    return engine


def create_store_engine(
    database_url: str = DEFAULT_DATABASE_URL, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Engine | AsyncEngine:
    """The engine for `storage.sessions.Transactions`: for SQLite a synchronous one, called on the
    event loop's thread, whose calls wait for another program's lock only briefly
    (`storage.sqlite_driver`; `Transactions` waits for the rest asynchronously); `create_engine`'s
    async engine for other databases."""
    url = with_async_driver(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(database_url, lock_timeout_s=lock_timeout_s)
    _prepare_private_sqlite_file(url)
    engine = loop_thread_engine(url)
    # WAL stays set in the file (the upgrade's engine set it); asking again takes a lock that
    # another program may hold, and a new connection would then fail after the short wait.
    _configure_sqlite(engine, busy_timeout_ms=BLOCKING_BUSY_WAIT_MS, set_wal=False)
    return engine


async def dispose(engine: Engine | AsyncEngine) -> None:
    """Close the engine's pooled connections."""
    if isinstance(engine, AsyncEngine):
        await engine.dispose()
    else:
        engine.dispose()


async def erase_traces(engine: Engine | AsyncEngine) -> bool:
    """After a delete: leave no readable copy of the deleted rows in any database file. On SQLite
    that is a TRUNCATE checkpoint (retried while readers hold old snapshots); True once it went
    through. Other databases keep no such files of ours (see the README's Reliability section).
    `engine`: the store's (`create_store_engine`: synchronous for SQLite)."""
    if engine.dialect.name != "sqlite":
        return True
    if not isinstance(engine, Engine):
        raise TypeError("erase_traces takes the store's engine, synchronous for SQLite (create_store_engine)")
    for _ in range(CHECKPOINT_ATTEMPTS):
        # On a worker thread: the checkpoint copies the whole log into the database file.
        if await asyncio.to_thread(_checkpoint_was_busy, engine):
            await asyncio.sleep(CHECKPOINT_RETRY_S)
            continue
        return True
    log.warning("could not checkpoint the write-ahead log after an erasure (the database is busy)")
    return False


def _checkpoint_was_busy(engine: Engine) -> bool:
    """Run the checkpoint on a driver connection, outside any transaction; True if it was busy."""
    with engine.connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            busy, _, _ = cursor.execute(CHECKPOINT).fetchone()
        finally:
            cursor.close()
    return bool(busy)


def sessionmakers(
    engine: Engine | AsyncEngine,
) -> tuple[sessionmaker[Session], sessionmaker[Session]] | tuple[async_sessionmaker, async_sessionmaker]:
    """(writer, reader) session factories, sync or async as the engine is; use the reader for
    transactions that never write."""
    reader_engine = engine.execution_options(**{READ_ONLY_OPTION: True})
    if isinstance(engine, AsyncEngine):
        return (async_sessionmaker(engine, expire_on_commit=False),
                async_sessionmaker(reader_engine, expire_on_commit=False))
    return sessionmaker(engine, expire_on_commit=False), sessionmaker(reader_engine, expire_on_commit=False)


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


def _prepare_private_sqlite_file(url: URL) -> None:
    """Create the missing folders 0700 and the database file 0600, and make an existing database
    file (and its side files) 0600, whatever the umask. Folders that already exist are left alone:
    they may be shared ones, such as /tmp."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir()
            os.chmod(folder, PRIVATE_FOLDER)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    for file in (path, *(path.with_name(path.name + side) for side in SQLITE_SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(file, PRIVATE_FILE)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int, set_wal: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Hand BEGIN over to SQLAlchemy (the documented recipe), then set per-connection pragmas.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if set_wal:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not just unlinked
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
