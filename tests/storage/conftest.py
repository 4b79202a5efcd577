"""Fixtures for the storage suite: a real database per test and pictures made with Pillow.

Every test that takes `database_url` (or `store`, `rows`) runs on a fresh SQLite file and, when
TEST_DATABASE_URL names a PostgreSQL server (always in CI), on PostgreSQL too: see tests/databases.py.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable

import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.database import create_engine
from storage.store import Store
from tests.databases import database_url, sqlite_only_note

__all__ = ["database_url"]

EXIF_ORIENTATION = 0x0112


def pytest_terminal_summary(terminalreporter) -> None:
    if note := sqlite_only_note():
        terminalreporter.write_line(note, yellow=True)


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
