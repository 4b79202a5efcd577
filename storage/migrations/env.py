"""Alembic environment for the storage schema.

Normally the runner in this package's __init__ hands in an open connection
(config.attributes["connection"]). Run through the `alembic` command line instead
(`alembic -c storage/alembic.ini ...`), it opens its own engine from `sqlalchemy.url` or the
DATABASE_URL environment variable.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from storage.database import DEFAULT_DATABASE_URL, create_engine
from storage.schema import Base

target_metadata = Base.metadata


def _configured_url() -> str:
    return (
        context.config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # lets ALTERs work on SQLite by rebuilding tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(_configured_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=_configured_url(), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (given := context.config.attributes.get("connection")) is not None:
    run_migrations(given)
else:
    asyncio.run(_run_with_own_engine())
