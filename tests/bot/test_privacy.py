"""Data at rest, end to end: the bot's database is private whatever the umask, and /forget leaves no
readable copy of what it erased in any database file (the file, its -wal and -shm)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from bot import texts
from tests.bot.conftest import answers_settled, runtime

USER_ID = 6201
NAME = "Quorblaxia"
WORDS = "what-does-the-zebra-in-my-garden-eat"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def noise_jpeg(side: int = 120) -> bytes:
    """A photo whose stored bytes are found nowhere else."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def permissive_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


async def test_the_bots_database_files_are_private_whatever_the_umask(
    bot_api, start_bot, tmp_path, permissive_umask
):
    folder = tmp_path / "fresh" / "data"
    application = await start_bot(database_url=f"sqlite+aiosqlite:///{folder / 'bot.sqlite3'}")
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), noise_jpeg(), caption="what is it?")
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)

    assert {path.name: mode(path) for path in folder.iterdir()} == {
        "bot.sqlite3": 0o600, "bot.sqlite3-wal": 0o600, "bot.sqlite3-shm": 0o600,
    }
    assert mode(folder) == mode(folder.parent) == 0o700


async def test_forget_leaves_the_words_the_name_and_the_image_in_no_database_file(
    bot_api, start_bot, tmp_path
):
    folder = tmp_path / "db"
    application = await start_bot(database_url=f"sqlite+aiosqlite:///{folder / 'bot.sqlite3'}")
    chat, user = bot_api.private_chat(USER_ID, NAME), bot_api.user(USER_ID, NAME)
    await bot_api.send_photo(chat, user, noise_jpeg(), caption=WORDS)
    [answer] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    store = runtime(application).store
    stored = (await store.history((await store.active_conversation(chat.id, USER_ID)).id))[0].images[0].data
    traces = {
        "words": WORDS.encode(), "name": NAME.encode(), "image": stored[len(stored) // 2 :][:64],
        "answer": answer.text.encode()[:40],
    }

    def found() -> dict[str, bool]:
        files = b"".join(path.read_bytes() for path in folder.iterdir())
        return {what: trace in files for what, trace in traces.items()}

    assert found() == dict.fromkeys(traces, True), "the test must see what it looks for"
    await bot_api.send_text(chat, user, "/forget")
    _, question = await bot_api.wait_for_bot_message(chat, count=2)
    await bot_api.press_button(chat, user, question, question.buttons[0][1])
    await bot_api.wait_for(lambda: bot_api.bot_messages(chat)[-1].text == texts.FORGET_DONE)

    assert found() == dict.fromkeys(traces, False)
