"""SQLite through aiosqlite, with its calls made on the event loop's own thread.

aiosqlite hands every call (each execute, fetch, commit) to a thread of its own and wakes the event
loop when it is done: four or five round trips per statement, each waiting for the loop to come
round again. With a hundred people writing at once the loop is busy, so a transaction held SQLite's
single write lock for milliseconds while SQLite needed microseconds, and the whole bot's writes
queued behind that. A statement on a local file in WAL mode (synchronous=NORMAL: no fsync at
commit) takes microseconds, less than one round trip costs, so here each call runs where it is
made.

What could block the loop is a wait for a lock another program holds (a backup, a migration, a
second bot on the same file). So the connection's busy timeout is short (`BLOCKING_BUSY_WAIT_MS`:
SQLite sleeps inside the call for at most that long) and a write that still finds the file locked
waits for it asynchronously (`storage.sessions`), up to the lock timeout as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect
from sqlalchemy.engine import URL

# How long one SQLite call may sleep on another program's lock (blocking the event loop) before it
# reports "database is locked" and the caller waits asynchronously.
BLOCKING_BUSY_WAIT_MS = 20
ITER_CHUNK_SIZE = 64  # aiosqlite's default


class LoopThreadConnection(aiosqlite.Connection):
    """aiosqlite's connection with every call run at once on the caller's thread. Its own thread
    still opens and closes the sqlite3 connection (which is why that is made with
    check_same_thread=False, as SQLAlchemy makes it anyway)."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def loop_thread_connector(url: URL) -> Callable[[], Awaitable[LoopThreadConnection]]:
    """`create_async_engine(async_creator=…)` for a SQLite URL: the connection SQLAlchemy's aiosqlite
    dialect would open for it (same file, same arguments), as a `LoopThreadConnection`."""
    args, kwargs = aiosqlite_dialect().create_connect_args(url)
    kwargs = {**kwargs, "check_same_thread": False, "timeout": BLOCKING_BUSY_WAIT_MS / 1000}

    async def connect() -> LoopThreadConnection:
        return await LoopThreadConnection(partial(sqlite3.connect, *args, **kwargs), ITER_CHUNK_SIZE)

    return connect


def is_locked(error: BaseException) -> bool:
    """Whether a driver error is SQLite's "database is locked" (another connection has the lock)."""
    original = getattr(error, "orig", error)
    return isinstance(original, sqlite3.OperationalError) and "locked" in str(original)
