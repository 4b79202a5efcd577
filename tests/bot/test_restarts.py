"""Restarts and crashes with real processes: nothing a person sent is lost, nothing is left half done.

`idefics-bot run` runs as a child process against the stand-in, which keeps updates until a later
getUpdates confirms them, as Telegram does. The first run writes long answers (the chatty checkpoint
with many new tokens), so a stop or a kill always finds one being written.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from bot import texts
from bot.request_runner import INTERRUPTED
from storage.store import Store
from storage.types import TurnStatus
from tests.bot.bot_process import BotProcess, bot_environment
from tests.bot.conftest import image_bytes

USER_ID, GROUP_ID, GROUP_MEMBER = 7101, -1007101, 7102
LONG = "1500"  # new tokens: seconds of writing for the tiny model
SHORT = "8"
QUICK_TAKEOVER = {"INBOX_LEASE_S": "2"}  # a killed process's claims run out after 2 s


def linked_messages(database_url: str, chat_id: int) -> int:
    """How many of the chat's messages the database links to turns (read as another program would)."""
    with sqlite3.connect(database_url.split("///", 1)[1]) as connection:
        query = "SELECT count(*) FROM turn_messages WHERE chat_id = ?"
        return connection.execute(query, (chat_id,)).fetchone()[0]


async def conversation_of(database_url: str, chat_id: int, user_id: int):
    async with Store(database_url) as store:
        return await store.history((await store.active_conversation(chat_id, user_id)).id)


async def test_a_restart_answers_the_interrupted_and_every_queued_message_in_order(
    bot_api, database_url, tiny_checkpoint_chatty, tmp_path
):
    environment = bot_environment(bot_api, database_url, tiny_checkpoint_chatty)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    async with BotProcess(bot_api, environment, tmp_path) as bot:
        await bot.start(MAX_NEW_TOKENS=LONG)
        await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")
        for text in ("second", "third", "fourth"):
            await bot_api.send_text(chat, user, text)
        await bot_api.wait_for(lambda: bot_api.drafts(chat))  # the first answer is being written
        assert await bot.stop(signal.SIGTERM) == 0, bot.log[-3000:]
        [notice] = bot_api.bot_messages(chat)
        assert notice.text.endswith(texts.CANCELLED_BY_SHUTDOWN)

        await bot.start(MAX_NEW_TOKENS=SHORT)
        _, *answers = await bot_api.wait_for_bot_message(chat, count=5, timeout=90)
        await bot_api.wait_quiet(quiet=1.0)
        assert await bot.stop() == 0, bot.log[-3000:]

    history = await conversation_of(database_url, chat.id, USER_ID)
    assert [(turn.role, turn.text, turn.status) for turn in history if turn.role == "user"] == [
        ("user", text, TurnStatus.COMPLETE) for text in ("first", "second", "third", "fourth")
    ]
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.CANCELLED),
        ("assistant", TurnStatus.COMPLETE),
        *[("user", TurnStatus.COMPLETE), ("assistant", TurnStatus.COMPLETE)] * 3,
    ]
    delivered = [
        turn.message_ids
        for turn in history
        if turn.role == "assistant" and turn.status is TurnStatus.COMPLETE
    ]
    assert delivered == [(answer.message_id,) for answer in answers], "answered in the order asked"
    assert len(bot_api.bot_messages(chat)) == 5, "nothing answered twice"
    assert "Traceback" not in bot.log


async def test_a_crash_mid_answer_is_answered_again_and_leaves_no_truncated_preview(
    bot_api, database_url, tiny_checkpoint_chatty, tmp_path
):
    environment = bot_environment(bot_api, database_url, tiny_checkpoint_chatty, **QUICK_TAKEOVER)
    private, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    group, member = bot_api.group_chat(GROUP_ID), bot_api.user(GROUP_MEMBER, "Gus")
    async with BotProcess(bot_api, environment, tmp_path) as bot:
        await bot.start(MAX_NEW_TOKENS=LONG)
        await bot_api.send_photo(private, user, image_bytes("blue"), caption="what is it?")
        question = await bot_api.send_text(group, member, "@idefics_test_bot tell me a long story")
        await bot_api.wait_for(lambda: bot_api.drafts(private) and bot_api.bot_messages(group))
        [preview] = bot_api.bot_messages(group)  # the group's answer, growing
        await bot_api.wait_for(lambda: linked_messages(database_url, group.id) == 2)  # question, preview
        assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL

        await bot.start(MAX_NEW_TOKENS=SHORT)
        [private_answer] = await bot_api.wait_for_bot_message(private, timeout=60)
        _, group_answer = await bot_api.wait_for_bot_message(group, count=2, timeout=60)
        await bot_api.wait_quiet(quiet=1.0)
        assert await bot.stop() == 0, bot.log[-3000:]

    assert preview.text == texts.INTERRUPTED_PREVIEW, "the truncated preview says what happened"
    assert group_answer.reply_to_message_id == question["message_id"] and group_answer.buttons
    answered = ((private.id, USER_ID, private_answer), (group.id, GROUP_MEMBER, group_answer))
    for chat_id, user_id, answer in answered:
        _, crashed, again = await conversation_of(database_url, chat_id, user_id)
        assert (crashed.status, crashed.finish_reason) == (TurnStatus.FAILED, INTERRUPTED)
        assert again.status is TurnStatus.COMPLETE and again.message_ids == (answer.message_id,)
    assert len(bot_api.bot_messages(private)) == 1


async def test_a_message_the_database_could_not_take_yet_survives_a_crash(
    bot_api, database_url, tiny_checkpoint, tmp_path
):
    """Stored before acknowledged: while its handler waits for a locked database, the update is
    not confirmed to Telegram, so a kill -9 then does not lose it."""
    environment = bot_environment(bot_api, database_url, tiny_checkpoint, DATABASE_LOCK_TIMEOUT_S="60",
                                  **QUICK_TAKEOVER)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    database = Path(database_url.split("///", 1)[1])
    async with BotProcess(bot_api, environment, tmp_path) as bot:
        await bot.start(MAX_NEW_TOKENS=SHORT)
        lock = sqlite3.connect(database, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        await bot_api.send_text(chat, user, "are you there?")
        [update] = bot_api.updates.pending
        # Fetched (by a new poll, or by the long poll that was already waiting when it came).
        await bot_api.wait_for(lambda: update["update_id"] in bot_api.updates.handed_out)
        assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        lock.rollback()
        lock.close()
        assert [update["message"]["text"] for update in bot_api.updates.pending] == ["are you there?"]

        await bot.start()
        [answer] = await bot_api.wait_for_bot_message(chat, timeout=60)
        await bot_api.wait_quiet(quiet=1.0)
        assert await bot.stop() == 0, bot.log[-3000:]

    question, reply = await conversation_of(database_url, chat.id, USER_ID)
    assert question.text == "are you there?"
    assert (reply.status, reply.message_ids) == (TurnStatus.COMPLETE, (answer.message_id,))


async def test_a_batch_stored_but_not_yet_confirmed_survives_a_crash_and_is_answered_once(
    bot_api, database_url, tiny_checkpoint, tmp_path
):
    """The requests of one getUpdates batch are stored together before the next getUpdates would
    confirm them; a kill -9 in between (that getUpdates fails) loses none, and the batch Telegram
    then sends again is recognised: each message is stored and answered once."""
    people = [(bot_api.private_chat(USER_ID + 10 + n), bot_api.user(USER_ID + 10 + n)) for n in range(5)]
    environment = bot_environment(bot_api, database_url, tiny_checkpoint, **QUICK_TAKEOVER)
    database = Path(database_url.split("///", 1)[1])
    async with BotProcess(bot_api, environment, tmp_path) as bot:
        await bot.start(MAX_NEW_TOKENS=SHORT)
        polls = len(bot_api.calls_to("getUpdates"))
        await bot_api.wait_for(lambda: len(bot_api.calls_to("getUpdates")) > polls)  # a long poll waits
        bot_api.start_outage(methods={"getUpdates"})  # the poll that would confirm them fails
        for chat, user in people:  # all at once: the waiting poll takes them as one batch
            await bot_api.send_text(chat, user, f"hello from {user.id}")

        def stored() -> int:
            with sqlite3.connect(database) as connection:
                return connection.execute("SELECT count(*) FROM inbox").fetchone()[0]

        await bot_api.wait_for(lambda: stored() == len(people), timeout=30)
        assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        bot_api.end_outage()
        assert len(bot_api.updates.pending) == len(people), "nothing was confirmed to Telegram"

        await bot.start(MAX_NEW_TOKENS=SHORT)
        for chat, _ in people:
            await bot_api.wait_for_bot_message(chat, timeout=60)
        await bot_api.wait_for(lambda: not bot_api.updates.pending, timeout=30)
        await bot_api.wait_quiet(quiet=1.0)
        assert await bot.stop() == 0, bot.log[-3000:]

    assert stored() == len(people), "the batch sent again was not stored twice"
    for chat, user in people:
        assert len(bot_api.bot_messages(chat)) == 1
        history = await conversation_of(database_url, chat.id, user.id)
        assert [turn.text for turn in history if turn.role == "user"] == [f"hello from {user.id}"]
