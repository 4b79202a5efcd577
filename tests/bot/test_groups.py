"""End to end in a group: silent unless addressed, mentions stripped, replies continue, one chat each."""

from __future__ import annotations

import pytest

from bot import texts
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

GROUP_ID = -100200300
ANN, BOB = 2001, 2002
BOT = "@idefics_test_bot"


async def conversation_texts(application, chat_id: int, user_id: int) -> list[tuple[str, str]]:
    await answers_settled(application)
    store = runtime(application).store
    conversation = await store.active_conversation(chat_id, user_id)
    return [(turn.role, turn.text) for turn in await store.history(conversation.id)]


async def test_group_messages_not_addressed_to_the_bot_are_ignored(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    await bot_api.send_text(group, ann, "lunch at noon?")
    await bot_api.send_photo(group, ann, image_bytes("red"), caption="look at this, @someone_else")
    await bot_api.send_text(group, ann, "/new@another_bot")
    await bot_api.wait_quiet(quiet=1.0)

    assert bot_api.bot_messages(group) == []
    assert services[0].conversations == []
    assert (await runtime(application).store.stats()).turns == 0


async def test_mention_is_answered_as_a_reply_without_the_mention(bot_api, start_bot):
    application = await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    question = await bot_api.send_text(group, ann, f"{BOT} what can you do?")

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == question["message_id"]
    assert (await conversation_texts(application, GROUP_ID, ANN))[0] == ("user", "what can you do?")


async def test_photo_with_a_caption_mentioning_the_bot_is_answered_about(bot_api, start_bot):
    application = await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    photo = await bot_api.send_photo(
        group, ann, image_bytes("green"), caption=f"{BOT} what is in this picture?"
    )

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == photo["message_id"]
    await answers_settled(application)
    store = runtime(application).store
    history = await store.history((await store.active_conversation(GROUP_ID, ANN)).id)
    assert history[0].text == "what is in this picture?" and len(history[0].images) == 1


async def test_reply_to_the_bots_message_continues_the_members_conversation(bot_api, start_bot):
    application = await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    await bot_api.send_photo(group, ann, image_bytes("blue"), caption=f"{BOT} describe this")
    [answer] = await bot_api.wait_for_bot_message(group)
    await answers_settled(application)

    await bot_api.send_text(group, ann, "why?", reply_to=answer)
    await bot_api.wait_for_bot_message(group, count=2)
    turns = await conversation_texts(application, GROUP_ID, ANN)
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2] == ("user", "why?")


@pytest.mark.both_databases  # one of the end-to-end set run on PostgreSQL too
async def test_each_group_member_has_their_own_conversation(bot_api, start_bot):
    application = await start_bot()
    group = bot_api.group_chat(GROUP_ID)
    await bot_api.send_text(group, bot_api.user(ANN, "Ann"), f"{BOT} first question from Ann")
    await bot_api.send_text(group, bot_api.user(BOB, "Bob"), f"{BOT} first question from Bob")
    await bot_api.wait_for_bot_message(group, count=2)

    ann_turns = await conversation_texts(application, GROUP_ID, ANN)
    bob_turns = await conversation_texts(application, GROUP_ID, BOB)
    assert ann_turns[0] == ("user", "first question from Ann") and len(ann_turns) == 2
    assert bob_turns[0] == ("user", "first question from Bob") and len(bob_turns) == 2


async def test_command_addressed_to_the_bot_in_a_group_is_handled(bot_api, start_bot):
    await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    await bot_api.send_text(group, ann, "/new@idefics_test_bot")

    [reply] = await bot_api.wait_for_bot_message(group)
    assert reply.text == texts.NEW_CONVERSATION
