"""One answer at a time per conversation, in arrival order; shutdown cancels and records in-flight answers."""

from __future__ import annotations

from bot import texts
from storage.store import Store
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

USER_ID = 5001


async def test_messages_sent_during_an_answer_wait_and_are_answered_in_order(bot_api, start_bot):
    factory, services = recording_factory(delay_s=0.1)
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")
    await bot_api.send_text(chat, user, "second")
    await bot_api.send_text(chat, user, "third")

    answers = await bot_api.wait_for_bot_message(chat, count=3)
    await answers_settled(application)
    store = runtime(application).store
    history = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert [(turn.role, turn.text) for turn in history if turn.role == "user"] == [
        ("user", "first"),
        ("user", "second"),
        ("user", "third"),
    ]
    assert [turn.role for turn in history] == ["user", "assistant"] * 3
    replies = [turn for turn in history if turn.role == "assistant"]
    assert [reply.message_ids for reply in replies] == [(answer.message_id,) for answer in answers]
    assert [len(conversation.turns) for conversation in services[0].conversations] == [1, 3, 5]


async def test_shutdown_cancels_the_answer_being_written_and_records_it(bot_api, start_bot, database_url):
    factory, _ = recording_factory(delay_s=0.25)
    application = await start_bot(model_service_factory=factory, max_new_tokens=200)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_text(chat, user, "a long answer please")
    await bot_api.wait_for(lambda: bot_api.drafts(chat))

    await start_bot.stop(application)

    [notice] = bot_api.bot_messages(chat)
    assert notice.text.endswith(texts.CANCELLED_BY_SHUTDOWN)
    async with Store(database_url) as store:
        history = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.CANCELLED),
    ]
