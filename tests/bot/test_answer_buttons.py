"""The buttons under answers end to end: "Regenerate" is /retry for that answer (the asker's newest only),
"New conversation" is /new for whoever presses it; stale, foreign and forged presses are refused politely."""

from __future__ import annotations

import pytest

from bot import texts
from bot.answer_keyboard import NEW_CONVERSATION_DATA, REGENERATE_DATA
from storage.types import TurnStatus
from tests.bot.button_presses import BOT, callback_answer, press_forged
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

ANN, BOB = 7001, 7002
GROUP_ID = -100700800
ANSWER_BUTTONS = [
    (texts.REGENERATE_BUTTON, REGENERATE_DATA),
    (texts.NEW_CONVERSATION_BUTTON, NEW_CONVERSATION_DATA),
]


async def history_of(application, chat_id: int, user_id: int):
    await answers_settled(application)
    store = runtime(application).store
    return await store.history((await store.active_conversation(chat_id, user_id)).id)


async def ask(bot_api, chat, user, text: str, **kwargs):
    before = len(bot_api.bot_messages(chat))
    question = await bot_api.send_text(chat, user, text, **kwargs)
    answer = (await bot_api.wait_for_bot_message(chat, count=before + 1))[-1]
    await bot_api.wait_for(lambda: answer.buttons)  # the buttons come with the final text
    return question, answer


async def test_every_answer_carries_regenerate_and_new_conversation_buttons(bot_api, start_bot):
    await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    await bot_api.send_photo(chat, ann, image_bytes("red"), caption="what is it?")
    [answer] = await bot_api.wait_for_bot_message(chat)
    await bot_api.wait_quiet()

    assert answer.buttons == ANSWER_BUTTONS


async def test_a_split_answer_has_the_buttons_only_on_its_last_message(
    bot_api, start_bot, tiny_checkpoint_chatty
):
    application = await start_bot(model_id=str(tiny_checkpoint_chatty), max_new_tokens=1300)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    await bot_api.send_text(chat, ann, "tell me everything")
    await bot_api.wait_for_bot_message(chat, count=2, timeout=120)
    await answers_settled(application, timeout=120)
    await bot_api.wait_quiet(quiet=1.0, timeout=60)

    *earlier, last = bot_api.bot_messages(chat)
    assert earlier and all(message.buttons == [] for message in earlier)
    assert last.buttons == ANSWER_BUTTONS


async def test_regenerate_writes_the_answer_again_and_supersedes_the_old_one(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    _, answer = await ask(bot_api, chat, ann, "what do you see?")
    await answers_settled(application)

    query = await bot_api.press_button(chat, ann, answer, REGENERATE_DATA)

    assert await callback_answer(bot_api, query) == texts.REGENERATING
    [_, again] = await bot_api.wait_for_bot_message(chat, count=2)
    history = await history_of(application, ANN, ANN)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.SUPERSEDED),
        ("assistant", TurnStatus.COMPLETE),
    ]
    assert [turn.role for turn in services[0].conversations[-1].turns] == ["user"]
    await bot_api.wait_for(lambda: again.buttons == ANSWER_BUTTONS)
    await bot_api.wait_for(lambda: answer.buttons == [])  # the superseded answer loses its buttons


async def test_regenerate_in_a_group_quotes_the_question_again(bot_api, start_bot):
    application = await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    question, answer = await ask(bot_api, group, ann, f"{BOT} what do you see?")
    await answers_settled(application)

    await callback_answer(bot_api, await bot_api.press_button(group, ann, answer, REGENERATE_DATA))

    [_, again] = await bot_api.wait_for_bot_message(group, count=2)
    assert again.reply_to_message_id == question["message_id"]


async def test_only_the_asker_may_regenerate_their_answer_in_a_group(bot_api, start_bot):
    application = await start_bot()
    group, ann, bob = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    _, answer = await ask(bot_api, group, ann, f"{BOT} what do you see?")
    await answers_settled(application)

    query = await bot_api.press_button(group, bob, answer, REGENERATE_DATA)

    assert await callback_answer(bot_api, query) == texts.NOT_YOUR_ANSWER
    await bot_api.wait_quiet()
    assert len(bot_api.bot_messages(group)) == 1
    assert [turn.status for turn in await history_of(application, GROUP_ID, ANN)] == [TurnStatus.COMPLETE] * 2


async def test_only_the_newest_answer_can_be_regenerated(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    _, first = await ask(bot_api, chat, ann, "first question")
    await ask(bot_api, chat, ann, "second question")
    await answers_settled(application)

    query = await bot_api.press_button(chat, ann, first, REGENERATE_DATA)

    assert await callback_answer(bot_api, query) == texts.ONLY_NEWEST_ANSWER
    await bot_api.wait_quiet()
    assert len(bot_api.bot_messages(chat)) == 2
    assert TurnStatus.SUPERSEDED not in [turn.status for turn in await history_of(application, ANN, ANN)]


async def test_an_answer_from_before_a_new_conversation_cannot_be_regenerated(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    _, answer = await ask(bot_api, chat, ann, "a question")
    await bot_api.send_text(chat, ann, "/new")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    query = await bot_api.press_button(chat, ann, answer, REGENERATE_DATA)

    assert await callback_answer(bot_api, query) == texts.ONLY_NEWEST_ANSWER


async def test_regenerating_an_erased_answer_says_it_is_gone(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    _, answer = await ask(bot_api, chat, ann, "a question")
    await answers_settled(application)
    await runtime(application).store.forget_user(ANN)

    query = await bot_api.press_button(chat, ann, answer, REGENERATE_DATA)

    assert await callback_answer(bot_api, query) == texts.ANSWER_GONE
    await bot_api.wait_quiet()
    assert len(bot_api.bot_messages(chat)) == 1


async def test_new_conversation_button_starts_afresh_for_whoever_presses_it(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    group, ann, bob = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    _, ann_answer = await ask(bot_api, group, ann, f"{BOT} Ann's first question")
    await ask(bot_api, group, bob, f"{BOT} Bob's first question")

    by_bob = await bot_api.press_button(group, bob, ann_answer, NEW_CONVERSATION_DATA)

    assert await callback_answer(bot_api, by_bob) == texts.NEW_CONVERSATION
    await answers_settled(application)
    assert await history_of(application, GROUP_ID, BOB) == [], "Bob starts afresh"
    assert len(await history_of(application, GROUP_ID, ANN)) == 2, "Ann's conversation is untouched"
    by_ann = await bot_api.press_button(group, ann, ann_answer, NEW_CONVERSATION_DATA)
    await callback_answer(bot_api, by_ann)
    await ask(bot_api, group, ann, f"{BOT} a fresh question")
    assert [turn.role for turn in services[0].conversations[-1].turns] == ["user"]


async def test_forged_answer_button_data_is_refused_without_a_crash(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    _, answer = await ask(bot_api, chat, ann, "a question")
    await answers_settled(application)

    forged = press_forged(bot_api, chat, ann, answer, "answer:delete-everything")

    assert await callback_answer(bot_api, forged) == texts.BUTTON_EXPIRED
    assert len(await history_of(application, ANN, ANN)) == 2


@pytest.mark.parametrize("task", ["/caption", "/story"])
async def test_task_answers_offer_a_new_conversation_but_not_a_plain_regenerate(bot_api, start_bot, task):
    """Regenerate would rewrite a caption or story as a plain answer, so those answers don't offer it."""
    await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    await bot_api.send_photo(chat, ann, image_bytes("teal"), caption=task)
    [answer] = await bot_api.wait_for_bot_message(chat)
    await bot_api.wait_for(lambda: answer.buttons)
    await bot_api.wait_quiet()

    assert answer.buttons == [(texts.NEW_CONVERSATION_BUTTON, NEW_CONVERSATION_DATA)]
