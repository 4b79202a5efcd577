"""Short transactions on one engine, for every part of the store: the one place that retries write
races and turns "the database can't do this now" into `DatabaseUnavailable`.

A transaction's body is a plain function of a SQLAlchemy `Session` (`def work(session) -> T`, no
awaits), as SQLAlchemy documents for `AsyncSession.run_sync`: on SQLite it runs on a synchronous
engine, called directly on the event loop's thread (`storage.sqlite_driver` says why); on other
databases it runs through the async engine, `run_sync` inside an `AsyncSession`'s transaction. The
store's helpers (`storage.queries`, `storage.turn_reads`, `storage.turn_writes`, …) are therefore
the same synchronous functions on either.

A write that collides on a unique key with a concurrent writer (two tasks creating the same user,
image or claim at once) is run again and then sees the other writer's row. A database that is
locked past the lock timeout, full, or not answering raises `DatabaseUnavailable`, so callers can
tell the person that nothing could be saved rather than that something went wrong.

On SQLite one process's writes queue on an asyncio lock, in the order they came, before they take
the file's write lock (BEGIN IMMEDIATE). Left to SQLite's busy handler, a crowd of waiting writers
sleeps in steps of up to 100 ms and polls; the lock is free most of that time, and a writer that
keeps losing the race runs past the lock timeout while the database is idle. Other processes on the
same file hold it up to the lock timeout: a call finding the file locked gives up after a moment
(`storage.sqlite_driver`) and the write is tried again after a pause, without blocking the loop;
the wait for this process's own writers counts apart.

A long write (an erasure, the retention purge: thousands of rows) would hold every other task of
the bot back while SQLite works on the loop's thread; `write(work, off_loop=True)` runs its body on
a worker thread instead, still in this process's turn for writes, while the loop answers reads
and queues other writes behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from storage.database import DEFAULT_LOCK_TIMEOUT_S, sessionmakers
from storage.errors import DatabaseUnavailable
from storage.sqlite_driver import is_locked

log = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[Session], T]  # a transaction's body

WRITE_ATTEMPTS = 5
# While another program holds SQLite's write lock, a write looks again after these pauses (doubling).
LOCK_POLL_FIRST_S, LOCK_POLL_MAX_S = 0.005, 0.1
# PostgreSQL's codes for a lock wait or statement cut short, a full disk, no memory, a lost
# connection (class 08) and a server shutting down (class 57P).
UNAVAILABLE_SQLSTATES = ("55P03", "57014", "53100", "53200", "08", "57P")


def is_unavailable(error: BaseException) -> bool:
    """Whether a database error means "not now" (locked, full, unreachable) rather than a bug."""
    if isinstance(error, (OperationalError, InterfaceError, PoolTimeout, OSError)):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = str(getattr(error.orig, "sqlstate", "") or getattr(error.orig, "pgcode", "") or "")
        return sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    return False


class Transactions:
    """Read and write transactions on one engine: a synchronous one (SQLite, called on the loop's
    thread) or an async one (see the module docstring)."""

    def __init__(self, engine: Engine | AsyncEngine, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.engine = engine
        self._writer, self._reader = sessionmakers(engine)
        self._lock_timeout_s = lock_timeout_s
        # SQLite has one writer at a time: this process's writers queue here (see the docstring).
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def sync_engine(self) -> Engine:
        """The synchronous engine the bodies' sessions run on (where SQLAlchemy's events are)."""
        return self.engine.sync_engine if isinstance(self.engine, AsyncEngine) else self.engine

    async def read(self, work: Work[T]) -> T:
        """Run `work` in a read-only transaction."""
        try:
            return await _run(self._reader, work)
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailable(str(error)) from error
            raise

    async def write(self, work: Work[T], *, off_loop: bool = False) -> T:
        """Run `work` in a write transaction, again when a concurrent writer won a unique-key race.
        `off_loop`: a long write, run on a worker thread where it would run on the loop's."""
        if self._write_turn is None:
            return await self._write(work, off_loop)
        try:
            async with asyncio.timeout(self._lock_timeout_s):
                await self._write_turn.acquire()
        except TimeoutError as error:
            raise DatabaseUnavailable(
                f"database is locked (waited {self._lock_timeout_s:g} s for this process's other writes)"
            ) from error
        try:
            return await self._write(work, off_loop)
        finally:
            self._write_turn.release()

    async def _write(self, work: Work[T], off_loop: bool) -> T:
        loop = asyncio.get_running_loop()
        locked_until = loop.time() + self._lock_timeout_s
        pause = LOCK_POLL_FIRST_S
        attempt = 1
        while True:
            try:
                return await _run(self._writer, work, off_loop=off_loop)
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS:
                    raise
                attempt += 1
                log.debug("write conflict, retrying (attempt %d)", attempt)
            except Exception as error:
                if self._write_turn is not None and is_locked(error) and loop.time() + pause < locked_until:
                    # Another program holds SQLite's lock: wait here, not inside the call (the loop's).
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LOCK_POLL_MAX_S)
                    continue
                if is_unavailable(error):
                    raise DatabaseUnavailable(str(error)) from error
                raise


async def _run(sessions: sessionmaker[Session] | async_sessionmaker, work: Work[T], *, off_loop: bool = False) -> T:
    """`work` in one transaction of a session from `sessions`: called directly for a synchronous
    engine's (on a worker thread if `off_loop`), through `run_sync` for an async one's."""
    if isinstance(sessions, sessionmaker):
        if off_loop:
            return await asyncio.to_thread(_in_transaction, sessions, work)
        return _in_transaction(sessions, work)
    async with sessions() as session, session.begin():
        return await session.run_sync(work)


def _in_transaction(sessions: sessionmaker[Session], work: Work[T]) -> T:
    with sessions() as session, session.begin():
        return work(session)
