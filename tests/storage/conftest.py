"""Fixtures for the storage suite: a real database per test and pictures made with Pillow.

Every test gets a fresh SQLite file in tmp_path. With TEST_DATABASE_URL set (e.g. a PostgreSQL
database kept for tests), the suite runs there instead, dropping all tables before and after
each test — so such a database must be dedicated to this suite and not shared by parallel runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Callable

import pytest
from PIL import Image
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import create_engine
from storage.schema import Base
from storage.store import Store

EXIF_ORIENTATION = 0x0112


async def _drop_everything(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            version_table = Table("alembic_version", MetaData())
            await connection.run_sync(lambda sync: version_table.drop(sync, checkfirst=True))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(tmp_path) -> AsyncIterator[str]:
    external = os.environ.get("TEST_DATABASE_URL")
    if not external:
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.sqlite3'}"
        return
    await _drop_everything(external)
    yield external
    await _drop_everything(external)


@pytest.fixture
async def store(database_url) -> AsyncIterator[Store]:
    opened = Store(database_url)
    await opened.start()
    yield opened
    await opened.stop()


@pytest.fixture
async def rows(database_url, store) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A second, independent session factory on the same database, for checking raw rows."""
    engine = create_engine(database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def encode(picture: Image.Image, fmt: str = "PNG", orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        extra["exif"] = exif.tobytes()
    picture.save(buffer, format=fmt, **extra)
    return buffer.getvalue()


def quadrants(width: int = 64, height: int = 32) -> Image.Image:
    """A picture whose orientation is easy to check: red top-left, green top-right,
    blue bottom-left, white bottom-right."""
    picture = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    picture.paste((255, 0, 0), (0, 0, half_w, half_h))
    picture.paste((0, 255, 0), (half_w, 0, width, half_h))
    picture.paste((0, 0, 255), (0, half_h, half_w, height))
    picture.paste((255, 255, 255), (half_w, half_h, width, height))
    return picture


def solid(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    return encode(Image.new("RGB", size, color))


@pytest.fixture
def picture_bytes() -> Callable[..., bytes]:
    return encode


@pytest.fixture
def quadrant_picture() -> Callable[..., Image.Image]:
    return quadrants


@pytest.fixture
def solid_png() -> Callable[..., bytes]:
    return solid
