"""Data at rest: private files whatever the umask, and erased means erased in every database file.

These are about SQLite's files, so they use a SQLite database even when the suite runs on PostgreSQL.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from storage.schema import utc_now
from storage.store import Store
from storage.types import ChatInfo, ImageInput, NewRequest, UserInfo

NAME = "Quorblaxia"
WORDS = "my-very-secret-question-about-the-zebra"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


async def test_database_files_and_folders_are_private_whatever_the_umask(tmp_path, permissive_umask):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    folder = shared / "new" / "data"
    database = folder / "bot.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{database}") as store:
        await store.touch(UserInfo(1, "Ann"), ChatInfo(1, "private"))
        files = {path.name: mode(path) for path in folder.iterdir()}

    assert files == {"bot.sqlite3": 0o600, "bot.sqlite3-wal": 0o600, "bot.sqlite3-shm": 0o600}
    assert (mode(folder), mode(folder.parent)) == (0o700, 0o700)
    assert mode(shared) == 0o755, "a folder that was there already is left alone"


async def test_an_existing_readable_database_is_made_private(tmp_path):
    database = tmp_path / "old.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{database}"):
        pass
    os.chmod(database, 0o644)

    async with Store(f"sqlite+aiosqlite:///{database}"):
        assert mode(database) == 0o600


def raw_files(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.iterdir()))


def noise_png(side: int = 96) -> bytes:
    """A picture whose stored bytes are found nowhere else (a solid one compresses to zeros)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_forget_leaves_no_copy_of_the_words_the_name_or_the_image_in_any_file(tmp_path):
    database = tmp_path / "bot.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{database}") as store:
        await store.touch(UserInfo(1, NAME), ChatInfo(1, "private"))
        conversation = await store.active_conversation(1, 1)
        turn = await store.add_user_turn(
            conversation.id, WORDS, [ImageInput(noise_png())]
        )
        await store.inbox.add(NewRequest(5, 1, 1, "question", {"text": WORDS, "name": NAME}, utc_now()))
        image_bytes = turn.images[0].data
        image_piece = image_bytes[len(image_bytes) // 2 : len(image_bytes) // 2 + 48]
        traces = (WORDS.encode(), NAME.encode(), image_piece)
        before = raw_files(tmp_path)
        assert all(trace in before for trace in traces), "the test must see the data before erasing"

        await store.forget_user(1)

        after = raw_files(tmp_path)
        assert [trace in after for trace in traces] == [False, False, False]
        assert (await store.stats()).users == 0
