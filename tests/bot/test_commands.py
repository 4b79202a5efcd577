"""The commands: /start, /help, /new, /retry, /cancel, /forget and /stats, through the stand-in."""

from __future__ import annotations

import pytest

from bot import texts
from model.types import ImagePart
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

USER_ID, OTHER_ID, ADMIN_ID = 4001, 4002, 4003


async def current_history(application, user_id: int, chat_id: int | None = None):
    await answers_settled(application)
    store = runtime(application).store
    conversation = await store.active_conversation(chat_id or user_id, user_id)
    return await store.history(conversation.id)


async def test_start_explains_the_bot_and_commands_are_registered(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/start")
    [reply] = await bot_api.wait_for_bot_message(chat)
    assert "@idefics_test_bot" in reply.text and "/new" in reply.text
    registered = {command["command"] for command in bot_api.my_commands()}
    assert {"start", "help", "new", "retry", "cancel", "forget"} <= registered


async def test_new_starts_a_conversation_without_the_earlier_image(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "/reset")
    await bot_api.wait_for_bot_message(chat, count=2)
    await bot_api.send_text(chat, user, "what did I send before?")
    messages = await bot_api.wait_for_bot_message(chat, count=3)

    assert messages[1].text == texts.NEW_CONVERSATION
    fresh = services[0].conversations[-1]
    assert len(fresh.turns) == 1
    assert not any(isinstance(part, ImagePart) for turn in fresh.turns for part in turn.parts)
    assert [turn.role for turn in await current_history(application, USER_ID)] == ["user", "assistant"]


async def test_retry_supersedes_the_last_answer_and_writes_a_new_one(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("blue"), caption="what is it?")
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    await bot_api.send_text(chat, user, "/retry")
    await bot_api.wait_for_bot_message(chat, count=2)

    history = await current_history(application, USER_ID)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.SUPERSEDED),
        ("assistant", TurnStatus.COMPLETE),
    ]
    retried = services[0].conversations[-1]
    assert [turn.role for turn in retried.turns] == ["user"], (
        "the superseded answer is not shown to the model"
    )


async def test_retry_with_nothing_to_retry_says_so(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/retry")
    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.NOTHING_TO_RETRY


async def test_cancel_stops_the_running_answer_and_records_it_cancelled(bot_api, start_bot, tiny_checkpoint):
    factory, services = recording_factory(delay_s=0.25)
    application = await start_bot(model_service_factory=factory, max_new_tokens=200)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_text(chat, user, "tell me a long story")
    await bot_api.wait_for(lambda: bot_api.drafts(chat))
    await bot_api.send_text(chat, user, "/cancel")

    [stopped] = await bot_api.wait_for_bot_message(chat)
    assert stopped.text.endswith(texts.CANCELLED)
    history = await current_history(application, USER_ID)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.CANCELLED),
    ]
    assert 0 < len(history[1].text) < 200 * 8


async def test_cancel_with_nothing_running_says_so(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/cancel")
    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.NOTHING_TO_CANCEL


@pytest.mark.both_databases  # one of the end-to-end set run on PostgreSQL too
async def test_forget_erases_everything_after_the_button_is_pressed(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="remember this")
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    store = runtime(application).store
    assert (await store.stats()).images == 1

    await bot_api.send_text(chat, user, "/forget")
    [_, question] = await bot_api.wait_for_bot_message(chat, count=2)
    assert question.text == texts.FORGET_QUESTION
    assert (await store.stats()).turns == 2, "nothing is erased before the button is pressed"
    yes = next(data for label, data in question.buttons if label == texts.FORGET_CONFIRM_BUTTON)
    await bot_api.press_button(chat, user, question, yes)

    await bot_api.wait_for(lambda: bot_api.bot_messages(chat)[-1].text == texts.FORGET_DONE)
    stats = await store.stats()
    assert (stats.users, stats.turns, stats.images) == (0, 0, 0)


async def test_forget_button_of_someone_else_erases_nothing(bot_api, start_bot):
    group_id = -100555
    application = await start_bot()
    group, owner, other = bot_api.group_chat(group_id), bot_api.user(USER_ID), bot_api.user(OTHER_ID, "Olga")
    await bot_api.send_text(group, owner, "@idefics_test_bot hello")
    await bot_api.wait_for_bot_message(group)
    await bot_api.send_text(group, owner, "/forget@idefics_test_bot")
    [_, question] = await bot_api.wait_for_bot_message(group, count=2)
    yes = next(data for label, data in question.buttons if label == texts.FORGET_CONFIRM_BUTTON)
    query = await bot_api.press_button(group, other, question, yes)

    await bot_api.wait_for(lambda: query["id"] in bot_api.callback_answers)
    assert bot_api.callback_answers[query["id"]]["text"] == texts.FORGET_NOT_YOURS
    await answers_settled(application)
    assert (await runtime(application).store.stats()).turns == 2


async def test_stats_is_for_admins_only(bot_api, start_bot):
    await start_bot(admin_user_ids=frozenset({ADMIN_ID}))
    for user_id in (USER_ID, ADMIN_ID):
        await bot_api.send_text(bot_api.private_chat(user_id), bot_api.user(user_id), "/stats")
    [refusal] = await bot_api.wait_for_bot_message(USER_ID)
    [stats] = await bot_api.wait_for_bot_message(ADMIN_ID)
    assert refusal.text == texts.ADMINS_ONLY
    assert stats.text.startswith("Users: ")
