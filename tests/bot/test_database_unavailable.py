"""The database can't take a write (another program holds its lock past DATABASE_LOCK_TIMEOUT_S):
the person is told specifically, their message is held in memory (MAX_UNSAVED_MESSAGES at most),
and it is stored and answered once the database is back."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, runtime

USER_ID, OTHER_ID = 6301, 6302
UNAVAILABLE_QUICKLY = dict(database_lock_timeout_s=0.5, inbox_lease_s=1.5)  # sweeps every 0.5 s


@contextmanager
def write_lock_held(database_url: str):
    """Another program holds the database's write lock (as a long migration or a backup might)."""
    holder = sqlite3.connect(Path(database_url.split("///", 1)[1]), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


async def test_a_message_the_database_cannot_take_is_held_told_and_answered_later(
    bot_api, start_bot, database_url
):
    application = await start_bot(**UNAVAILABLE_QUICKLY)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    with write_lock_held(database_url):
        await bot_api.send_text(chat, user, "hello, anyone?")
        [notice] = await bot_api.wait_for_bot_message(chat)
        assert notice.text == texts.CANNOT_SAVE_KEPT
        assert runtime(application).inbox.unsaved_count == 1

    _, answer = await bot_api.wait_for_bot_message(chat, count=2, timeout=30)
    await answers_settled(application)
    store = runtime(application).store
    question, reply = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert (question.text, reply.status, reply.message_ids) == ("hello, anyone?", TurnStatus.COMPLETE,
                                                                (answer.message_id,))
    assert runtime(application).inbox.unsaved_count == 0


async def test_beyond_what_it_can_hold_the_bot_says_to_send_it_again(bot_api, start_bot, database_url):
    application = await start_bot(max_unsaved_messages=1, **UNAVAILABLE_QUICKLY)
    first, second = bot_api.private_chat(USER_ID), bot_api.private_chat(OTHER_ID, "Olga")
    with write_lock_held(database_url):
        await bot_api.send_text(first, bot_api.user(USER_ID), "first")
        await bot_api.wait_for_bot_message(first)
        await bot_api.send_text(second, bot_api.user(OTHER_ID), "second")
        [notice] = await bot_api.wait_for_bot_message(second)

    assert notice.text == texts.CANNOT_SAVE_FULL
    await bot_api.wait_for_bot_message(first, count=2, timeout=30)  # the one it held is answered
    await answers_settled(application)
    await bot_api.wait_quiet(quiet=1.0)
    assert [m.text for m in bot_api.bot_messages(second)] == [texts.CANNOT_SAVE_FULL]
