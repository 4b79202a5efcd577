"""Replying to a photo brings that photo into the question, in private chats and (when asked) in groups."""

from __future__ import annotations

from bot import texts
from tests.bot.conftest import image_bytes, runtime
from tests.bot.task_helpers import BOT, dominant_colour, history, images_of, stored_colour, task_factory

USER_ID = 5201
GROUP_ID = -100520520
ANN, BOB = 5211, 5212


async def test_reply_to_an_earlier_photo_asks_about_that_photo_without_downloading_it_again(
    bot_api, start_bot
):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    red = await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")
    await bot_api.send_photo(chat, user, image_bytes("blue"), caption="second")
    await bot_api.wait_for_bot_message(chat, count=2)
    await bot_api.send_text(chat, user, "what colour is this one?", reply_to=red)

    await bot_api.wait_for_bot_message(chat, count=3)
    question = (await history(application, chat.id, USER_ID))[-2]
    assert question.text == "what colour is this one?"
    assert [stored_colour(image) for image in question.images] == ["red"]
    asked = services[0].conversations[-1].turns[-1]
    assert [dominant_colour(image) for image in images_of(asked)] == ["red"]
    assert len(bot_api.calls_to("getFile")) == 2, "the replied photo came from the store"


async def test_reply_to_an_image_file_uses_that_image(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    # The file is not answered on its own here: it is only the target of the reply.
    document = await bot_api.send_document(chat, user, image_bytes("green", fmt="PNG"), "g.png", "image/png")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "is it green?", reply_to=document)

    await bot_api.wait_for_bot_message(chat, count=2)
    question = (await history(application, chat.id, USER_ID))[-2]
    assert question.text == "is it green?" and [stored_colour(i) for i in question.images] == ["green"]


async def test_group_mention_replying_to_someones_photo_answers_about_that_photo(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    ann, bob = bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    photo = await bot_api.send_photo(group, ann, image_bytes("blue"), caption="my new bike")
    question = await bot_api.send_text(group, bob, f"{BOT} what colour is the bike?", reply_to=photo)

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == question["message_id"]
    [bob_turn, _] = await history(application, GROUP_ID, BOB)
    assert bob_turn.text == "what colour is the bike?"
    assert [stored_colour(image) for image in bob_turn.images] == ["blue"]
    assert len(services[0].conversations) == 1, "Ann's photo itself was not answered"


async def test_group_reply_to_a_photo_without_mentioning_the_bot_stays_silent(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    ann, bob = bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    photo = await bot_api.send_photo(group, ann, image_bytes("red"))
    await bot_api.send_text(group, bob, "nice colour!", reply_to=photo)

    await bot_api.wait_quiet(quiet=1.0)
    assert bot_api.bot_messages(group) == []
    assert services[0].conversations == []
    assert (await runtime(application).store.stats()).turns == 0


async def test_bare_mention_replying_to_a_photo_describes_it_quoting_the_photo(bot_api, start_bot):
    application = await start_bot()
    group = bot_api.group_chat(GROUP_ID)
    ann, bob = bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    photo = await bot_api.send_photo(group, ann, image_bytes("green"))
    await bot_api.send_text(group, bob, BOT, reply_to=photo)

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.reply_to_message_id == photo["message_id"]
    [bob_turn, _] = await history(application, GROUP_ID, BOB)
    assert bob_turn.text == texts.DEFAULT_IMAGE_INSTRUCTION and len(bob_turn.images) == 1


async def test_reply_to_a_photo_in_a_forum_topic_is_answered_in_that_topic(bot_api, start_bot):
    await start_bot()
    forum = bot_api.group_chat(GROUP_ID, is_forum=True)
    topic = bot_api.create_topic(forum, "Pets")
    ann, bob = bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    photo = await bot_api.send_photo(forum, ann, image_bytes("red"), message_thread_id=topic)
    await bot_api.send_text(forum, bob, f"{BOT} what is this?", reply_to=photo, message_thread_id=topic)

    [answer] = await bot_api.wait_for_bot_message(forum)
    assert answer.message_thread_id == topic
