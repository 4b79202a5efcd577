"""/caption end to end: a one-sentence caption, greedy and short, stored so follow-ups can use it."""

from __future__ import annotations

import pytest

from bot import texts
from bot.commands.caption import CAPTION_MAX_NEW_TOKENS, first_sentence
from model.types import TextPart
from storage.types import TurnStatus
from tests.bot.conftest import image_bytes
from tests.bot.task_helpers import dominant_colour, history, images_of, stored_colour, task_factory

USER_ID = 5301
GROUP_ID = -100530530
ANN, BOB = 5311, 5312


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("A red square on a table. It looks old.", "A red square on a table."),
        ("  Wow! Another sentence.", "Wow!"),
        ('He said "hi." Then left.', 'He said "hi."'),
        ("version 2.5 of a logo", "version 2.5 of a logo"),
        ("no sentence end yet", "no sentence end yet"),
    ],
)
def test_first_sentence_keeps_only_the_first_sentence(written, kept):
    assert first_sentence(written) == kept


async def test_photo_captioned_caption_gets_a_short_greedy_one_sentence_caption(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory, max_new_tokens=64)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="/caption")

    [answer] = await bot_api.wait_for_bot_message(chat)
    user_turn, assistant_turn = await history(application, chat.id, USER_ID)
    assert user_turn.text == texts.CAPTION_INSTRUCTION
    assert [stored_colour(image) for image in user_turn.images] == ["red"]
    [params] = services[0].params
    assert params.max_new_tokens == CAPTION_MAX_NEW_TOKENS and not params.do_sample
    [raw] = services[0].results
    assert assistant_turn.status is TurnStatus.COMPLETE
    assert assistant_turn.text == first_sentence(raw.text)
    assert answer.text == (assistant_turn.text or texts.EMPTY_ANSWER)
    asked = services[0].conversations[0].turns[-1]
    assert asked.parts[-1] == TextPart(texts.CAPTION_INSTRUCTION)


async def test_caption_as_a_reply_to_someones_photo_in_a_group(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    photo = await bot_api.send_photo(group, bot_api.user(ANN, "Ann"), image_bytes("blue"))
    command = await bot_api.send_text(
        group, bot_api.user(BOB, "Bob"), "/caption@idefics_test_bot", reply_to=photo
    )

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == command["message_id"]
    [bob_turn, _] = await history(application, GROUP_ID, BOB)
    assert bob_turn.text == texts.CAPTION_INSTRUCTION
    assert [dominant_colour(image) for image in images_of(services[0].conversations[0].turns[-1])] == ["blue"]


async def test_follow_up_after_a_caption_sees_the_photo_and_the_caption(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("green"), caption="/caption")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "what colour is it?")

    await bot_api.wait_for_bot_message(chat, count=2)
    caption_turn = (await history(application, chat.id, USER_ID))[1]
    follow_up = services[0].conversations[-1]
    assert [turn.role for turn in follow_up.turns] == ["user", "assistant", "user"]
    assert [dominant_colour(image) for image in images_of(follow_up.turns[0])] == ["green"]
    assert follow_up.turns[1].parts == (TextPart(caption_turn.text),)
    assert follow_up.turns[2].parts == (TextPart("what colour is it?"),)


async def test_caption_without_a_photo_gets_the_usage_reply(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_text(chat, user, "/caption")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.CAPTION_USAGE
    assert services[0].conversations == []
    assert await history(application, chat.id, USER_ID) == []


async def test_caption_replying_to_a_text_message_gets_the_usage_reply(bot_api, start_bot):
    await start_bot()
    group = bot_api.group_chat(GROUP_ID)
    text = await bot_api.send_text(group, bot_api.user(ANN, "Ann"), "no picture here")
    await bot_api.send_text(group, bot_api.user(BOB, "Bob"), "/caption@idefics_test_bot", reply_to=text)

    [reply] = await bot_api.wait_for_bot_message(group)
    assert reply.text == texts.CAPTION_USAGE


async def test_help_and_the_command_menu_list_the_image_tasks(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/help")

    [reply] = await bot_api.wait_for_bot_message(chat)
    tasks = ("caption", "classify", "story", "describe")
    assert all(f"/{name}" in reply.text for name in tasks)
    registered = {command["command"] for command in bot_api.my_commands()}
    assert set(tasks) <= registered
