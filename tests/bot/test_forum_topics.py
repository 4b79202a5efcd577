"""Forum topics end to end: everything the bot writes (streamed answers, final answers, apologies, menus,
regenerated answers) goes to the topic the question came from.

Conversations are per (chat, member), as in any group, not per topic: a member who asks in one topic
and then in another is still in the same conversation (the bot remembers the image they sent in the
first topic). /new starts afresh in every topic at once.
"""

from __future__ import annotations

from bot import texts
from bot.answer_keyboard import REGENERATE_DATA
from model.types import ImagePart
from tests.bot.button_presses import BOT, button_data, callback_answer
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

ANN, BOB = 8001, 8002
FORUM_ID = -100800900


def in_topic(bot_api, forum, topic: int) -> bool:
    """Every message the bot has in the forum is in this topic, and it has at least one."""
    everything = bot_api.bot_messages(forum)
    return bool(everything) and everything == bot_api.bot_messages(forum, thread_id=topic)


def thread_ids_of(bot_api, method: str) -> set:
    return {call.params.get("message_thread_id") for call in bot_api.calls_to(method)}


async def test_an_answer_is_streamed_and_finished_in_the_topic_of_the_question(bot_api, start_bot):
    application = await start_bot()
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    topic = bot_api.create_topic(forum, "Cats")
    question = await bot_api.send_photo(
        forum, ann, image_bytes("orange"), caption=f"{BOT} what is this?", message_thread_id=topic
    )

    [answer] = await bot_api.wait_for_bot_message(forum)
    await answers_settled(application)
    await bot_api.wait_quiet()

    assert answer.message_thread_id == topic and answer.reply_to_message_id == question["message_id"]
    assert in_topic(bot_api, forum, topic)
    assert thread_ids_of(bot_api, "sendMessage") == {topic}
    assert thread_ids_of(bot_api, "sendChatAction") <= {topic}
    assert answer.buttons, "the final answer (with its buttons) is in the topic"


async def test_a_message_in_the_general_topic_is_answered_outside_any_topic(bot_api, start_bot):
    await start_bot()
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    bot_api.create_topic(forum, "Cats")
    await bot_api.send_text(forum, ann, f"{BOT} hello everyone")

    [answer] = await bot_api.wait_for_bot_message(forum)
    assert answer.message_thread_id is None


async def test_apologies_go_to_the_topic_of_the_question(bot_api, start_bot):
    await start_bot(max_image_bytes=1000)
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    topic = bot_api.create_topic(forum, "Files")
    big = image_bytes("red", (400, 400), "PNG")
    await bot_api.send_document(forum, ann, big, "big.png", "image/png", caption=BOT, message_thread_id=topic)
    await bot_api.send_document(
        forum, ann, b"%PDF-1.4", "report.pdf", "application/pdf", caption=BOT, message_thread_id=topic
    )

    replies = sorted(message.text for message in await bot_api.wait_for_bot_message(forum, count=2))
    assert replies[0] == texts.ONLY_IMAGES and replies[1].startswith("That image is too large")
    assert in_topic(bot_api, forum, topic)


async def test_an_unexpected_failure_is_apologised_for_in_the_topic(bot_api, start_bot):
    application = await start_bot()
    start_bot.expect_errors_from("bot.app")
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    topic = bot_api.create_topic(forum, "Broken")
    await runtime(application).store.stop()  # the database goes away under the running bot
    await bot_api.send_text(forum, ann, f"{BOT} hello?", message_thread_id=topic)

    [apology] = await bot_api.wait_for_bot_message(forum)
    assert apology.text == texts.UNEXPECTED_ERROR and apology.message_thread_id == topic


async def test_mode_and_settings_menus_open_and_change_in_the_topic(bot_api, start_bot):
    await start_bot(admin_user_ids=frozenset({ANN}))
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    topic = bot_api.create_topic(forum, "Setup")
    await bot_api.send_text(forum, ann, f"/mode{BOT}", message_thread_id=topic)
    await bot_api.send_text(forum, ann, f"/settings{BOT}", message_thread_id=topic)
    mode_menu, settings_menu = await bot_api.wait_for_bot_message(forum, count=2)
    if mode_menu.text.startswith("Settings"):
        mode_menu, settings_menu = settings_menu, mode_menu

    for menu, label in ((mode_menu, "storyteller"), (settings_menu, "Short")):
        await callback_answer(bot_api, await bot_api.press_button(forum, ann, menu, button_data(menu, label)))

    await bot_api.wait_for(lambda: mode_menu.edits and settings_menu.edits)
    assert mode_menu.text.startswith("Mode for this chat: storyteller")
    assert "Answer length: Short" in settings_menu.text
    assert len(bot_api.bot_messages(forum)) == 2 and in_topic(bot_api, forum, topic)


async def test_regenerate_new_and_retry_answer_in_the_topic_they_were_used_in(bot_api, start_bot):
    application = await start_bot()
    forum, ann = bot_api.group_chat(FORUM_ID, is_forum=True), bot_api.user(ANN, "Ann")
    topic = bot_api.create_topic(forum, "Dogs")
    await bot_api.send_text(forum, ann, f"{BOT} describe a dog", message_thread_id=topic)
    [answer] = await bot_api.wait_for_bot_message(forum)
    await bot_api.wait_for(lambda: answer.buttons)
    await answers_settled(application)

    await callback_answer(bot_api, await bot_api.press_button(forum, ann, answer, REGENERATE_DATA))
    await bot_api.wait_for_bot_message(forum, count=2)
    await answers_settled(application)
    await bot_api.send_text(forum, ann, f"/retry{BOT}", message_thread_id=topic)
    await bot_api.wait_for_bot_message(forum, count=3)
    await answers_settled(application)
    await bot_api.send_text(forum, ann, f"/new{BOT}", message_thread_id=topic)
    await bot_api.wait_for_bot_message(forum, count=4)

    assert in_topic(bot_api, forum, topic)
    assert bot_api.bot_messages(forum)[-1].text == texts.NEW_CONVERSATION


async def test_a_members_conversation_carries_across_topics_and_stays_their_own(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    forum = bot_api.group_chat(FORUM_ID, is_forum=True)
    ann, bob = bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    cats, dogs = bot_api.create_topic(forum, "Cats"), bot_api.create_topic(forum, "Dogs")
    await bot_api.send_photo(forum, ann, image_bytes("blue"), caption=f"{BOT} look", message_thread_id=cats)
    await bot_api.wait_for_bot_message(forum)
    await answers_settled(application)
    await bot_api.send_text(forum, ann, f"{BOT} and what colour was it?", message_thread_id=dogs)
    await bot_api.send_text(forum, bob, f"{BOT} hi from Bob", message_thread_id=cats)
    await bot_api.wait_for_bot_message(forum, count=3)
    await answers_settled(application)

    [anns_follow_up] = [c for c in services[0].conversations if "colour" in c.turns[-1].parts[-1].text]
    [bobs] = [c for c in services[0].conversations if "Bob" in c.turns[-1].parts[-1].text]
    assert [turn.role for turn in anns_follow_up.turns] == ["user", "assistant", "user"]
    assert isinstance(anns_follow_up.turns[0].parts[0], ImagePart), "the image from the other topic"
    assert len(bobs.turns) == 1
    answers_by_topic = {m.message_thread_id for m in bot_api.bot_messages(forum)}
    assert answers_by_topic == {cats, dogs}
