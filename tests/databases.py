"""The databases tests run on: SQLite always, and PostgreSQL when TEST_DATABASE_URL names a server.

A test that takes `database_url` runs once per database in the same pytest run (ids `[sqlite]` and
`[postgresql]`). Without TEST_DATABASE_URL a developer's run is SQLite only, and says so at the end;
`eval "$(.ci/postgres start)"` starts a throwaway server and sets it. In CI (CI=true, as .ci/run sets)
the PostgreSQL runs must happen: there they fail, loudly, rather than vanish when the URL is missing.

The PostgreSQL database is emptied (every table dropped) before and after each test, so it must be
dedicated to the tests and not shared by runs in parallel. The suite's own workers (pytest-xdist, one
process per CPU) each get a database of their own on that server, `<name>_<worker>`, made on first use. Any test package can use the fixture:
`from tests.databases import database_url` in its conftest.py; the bot's end-to-end tests run a chosen
few on both (`@pytest.mark.both_databases`, tests/bot/conftest.py) through `empty_database`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage.database import create_engine
from storage.schema import Base

URL_VARIABLE = "TEST_DATABASE_URL"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def database_kinds() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(URL_VARIABLE) or in_ci() else ["sqlite"]


def postgresql_only() -> list[str]:
    """Parameters for a test of what only PostgreSQL serves (several bot processes on one database):
    run wherever the PostgreSQL runs happen, so in CI always."""
    return [kind for kind in database_kinds() if kind == "postgresql"]


def sqlite_only_note() -> str | None:
    """A line for the end of a run that used no PostgreSQL, or None."""
    if "postgresql" in database_kinds():
        return None
    return (
        f"storage tests ran on SQLite only: set {URL_VARIABLE} (eval \"$(.ci/postgres start)\" "
        "starts a throwaway PostgreSQL) to run them on PostgreSQL as well"
    )


def postgres_url() -> str:
    url = os.environ.get(URL_VARIABLE, "")
    if not url:
        pytest.fail(
            f"CI=true but {URL_VARIABLE} is not set: CI must run the storage tests on PostgreSQL too. "
            "`.ci/run` starts a server with `.ci/postgres start`; run that, or unset CI for a SQLite-only run.",
            pytrace=False,
        )
    if not url.startswith(("postgresql", "postgres")):
        pytest.fail(f"{URL_VARIABLE} must be a PostgreSQL URL (postgresql+asyncpg://...)", pytrace=False)
    return for_this_worker(url)


def for_this_worker(url: str) -> str:
    """The database of this test worker on the server `url` names (`url` itself when not in parallel)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker:
        return url
    parts = make_url(url)
    return parts.set(database=f"{parts.database}_{worker}").render_as_string(hide_password=False)


_databases_made: set[str] = set()


async def make_sure_it_exists(url: str) -> None:
    """CREATE DATABASE for `url` unless the server has it (a worker's database, the first time)."""
    if url in _databases_made:
        return
    name = make_url(url).database
    server = make_url(url).set(database="postgres")
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not found:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    _databases_made.add(url)


async def drop_everything(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            version_table = Table("alembic_version", MetaData())
            await connection.run_sync(lambda sync: version_table.drop(sync, checkfirst=True))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def empty_database(kind: str, folder: Path) -> AsyncIterator[str]:
    """The URL of an empty database of this kind: a fresh SQLite file in `folder`, or the PostgreSQL
    test database, emptied before and after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'store.sqlite3'}"
        return
    url = postgres_url()
    await make_sure_it_exists(url)
    await drop_everything(url)
    try:
        yield url
    finally:
        await drop_everything(url)


@pytest.fixture(params=database_kinds())
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """An empty database: a fresh SQLite file, or the emptied PostgreSQL test database."""
    async with empty_database(request.param, tmp_path) as url:
        yield url
