"""The store's SQLite engine: SQLAlchemy's synchronous pysqlite driver, called on the event loop's
own thread.

A statement on a local file in WAL mode (synchronous=NORMAL: no fsync at commit) takes
microseconds. Handed to a thread (aiosqlite's, one round trip per execute, fetch and commit, each
waiting for a busy loop to come round again), a transaction held SQLite's single write lock for
milliseconds; run through SQLAlchemy's async layer on the loop's thread (a greenlet per statement,
async pool checkouts, result wrappers), it still cost ~0.2-0.3 ms of CPU more than the statements.
So a transaction's body is a plain function of a `Session` (`storage.sessions`) and runs here, on a
synchronous engine, with nothing between the event loop and SQLite but SQLAlchemy itself.

What could block the loop is a wait for a lock another program holds (a backup, a migration, a
second bot on the same file). So the connection's busy timeout is short (`BLOCKING_BUSY_WAIT_MS`:
SQLite sleeps inside the call for at most that long) and a write that still finds the file locked
waits for it asynchronously (`storage.sessions`), up to the lock timeout as before. The schema
upgrade at start, which may wait for the whole lock timeout, uses the async engine of
`storage.database.create_engine` (aiosqlite's thread) instead.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Engine
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL

# How long one SQLite call may sleep on another program's lock (blocking the event loop) before it
# reports "database is locked" and the caller waits asynchronously.
BLOCKING_BUSY_WAIT_MS = 20


def loop_thread_engine(url: URL) -> Engine:
    """A synchronous engine on the file of a SQLite URL (any driver named), opened with the same
    arguments, the short busy wait, and usable from whichever thread disposes of it."""
    return create_sync_engine(
        url.set(drivername="sqlite+pysqlite"),
        connect_args={"timeout": BLOCKING_BUSY_WAIT_MS / 1000, "check_same_thread": False},
    )


def is_locked(error: BaseException) -> bool:
    """Whether a driver error is SQLite's "database is locked" (another connection has the lock)."""
    original = getattr(error, "orig", error)
    return isinstance(original, sqlite3.OperationalError) and "locked" in str(original)
