"""/describe end to end: describing someone's photo for a group, and a photo in a private chat."""

from __future__ import annotations

from bot import texts
from model.types import TextPart
from tests.bot.conftest import image_bytes, runtime
from tests.bot.task_helpers import dominant_colour, history, images_of, stored_colour, task_factory

USER_ID = 5601
GROUP_ID = -100560560
ANN, BOB = 5611, 5612


async def test_describe_replying_to_someones_photo_describes_it_for_the_group(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    photo = await bot_api.send_photo(
        group, bot_api.user(ANN, "Ann"), image_bytes("red"), caption="guess what"
    )
    await bot_api.wait_quiet(quiet=0.5)
    assert bot_api.bot_messages(group) == [], "nobody asked about the photo yet"
    await bot_api.send_text(group, bot_api.user(BOB, "Bob"), "/describe", reply_to=photo)

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == photo["message_id"], "the description quotes the photo"
    [bob_turn, assistant_turn] = await history(application, GROUP_ID, BOB)
    assert bob_turn.text == texts.DEFAULT_IMAGE_INSTRUCTION
    assert [stored_colour(image) for image in bob_turn.images] == ["red"]
    assert answer.message_id in assistant_turn.message_ids
    [asked] = services[0].conversations
    assert [dominant_colour(image) for image in images_of(asked.turns[-1])] == ["red"]


async def test_describe_with_a_question_asks_it_about_the_replied_photo(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    photo = await bot_api.send_photo(chat, user, image_bytes("blue"), caption="first look")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "/describe how many colours?", reply_to=photo)

    await bot_api.wait_for_bot_message(chat, count=2)
    asked = services[0].conversations[-1].turns[-1]
    assert asked.parts[-1] == TextPart("how many colours?")
    assert [dominant_colour(image) for image in images_of(asked)] == ["blue"]


async def test_photo_captioned_describe_is_described(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("green"), caption="/describe")

    await bot_api.wait_for_bot_message(chat)
    [user_turn, _] = await history(application, chat.id, USER_ID)
    assert user_turn.text == texts.DEFAULT_IMAGE_INSTRUCTION and len(user_turn.images) == 1


async def test_describe_in_a_forum_topic_answers_in_that_topic(bot_api, start_bot):
    await start_bot()
    forum = bot_api.group_chat(GROUP_ID, is_forum=True)
    topic = bot_api.create_topic(forum, "Photos")
    photo = await bot_api.send_photo(
        forum, bot_api.user(ANN, "Ann"), image_bytes("red"), message_thread_id=topic
    )
    await bot_api.send_text(
        forum, bot_api.user(BOB, "Bob"), "/describe", reply_to=photo, message_thread_id=topic
    )

    [answer] = await bot_api.wait_for_bot_message(forum)
    assert answer.message_thread_id == topic and answer.reply_to_message_id == photo["message_id"]


async def test_describe_without_a_photo_gets_the_usage_reply(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    await bot_api.send_text(group, bot_api.user(BOB, "Bob"), "/describe@idefics_test_bot")

    [reply] = await bot_api.wait_for_bot_message(group)
    assert reply.text == texts.DESCRIBE_USAGE
    assert services[0].conversations == [] and (await runtime(application).store.stats()).turns == 0


async def test_describe_addressed_to_another_bot_is_ignored(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    photo = await bot_api.send_photo(group, bot_api.user(ANN, "Ann"), image_bytes("red"))
    await bot_api.send_text(group, bot_api.user(BOB, "Bob"), "/describe@other_bot", reply_to=photo)
    await bot_api.send_photo(
        group, bot_api.user(ANN, "Ann"), image_bytes("blue"), caption="/caption@other_bot"
    )

    await bot_api.wait_quiet(quiet=1.0)
    assert bot_api.bot_messages(group) == [] and services[0].conversations == []
