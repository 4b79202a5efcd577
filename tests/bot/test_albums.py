"""Albums end to end: photos sent together are one user turn, answered once, in the conversation's order."""

from __future__ import annotations

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import image_bytes, runtime
from tests.bot.task_helpers import BOT, dominant_colour, history, images_of, stored_colour, task_factory

USER_ID = 5001
GROUP_ID = -100500600
ANN, BOB = 5101, 5102
COLOURS = ["red", "green", "blue"]


async def test_album_is_one_turn_with_all_images_in_order_and_the_caption_of_any_item(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    sent = await bot_api.send_album(
        chat,
        user,
        [image_bytes(colour) for colour in COLOURS],
        caption="Which is brightest?",
        caption_index=1,
    )

    [answer] = await bot_api.wait_for_bot_message(chat)
    await bot_api.wait_quiet(quiet=1.5)
    assert len(bot_api.bot_messages(chat)) == 1, "the album is answered once"
    user_turn, assistant_turn = await history(application, chat.id, USER_ID)
    assert user_turn.text == "Which is brightest?"
    assert [stored_colour(image) for image in user_turn.images] == COLOURS
    assert set(user_turn.message_ids) == {item["message_id"] for item in sent}
    assert assistant_turn.status is TurnStatus.COMPLETE and answer.message_id in assistant_turn.message_ids
    [asked] = services[0].conversations
    assert [dominant_colour(image) for image in images_of(asked.turns[-1])] == COLOURS


async def test_album_without_caption_is_described_once(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_album(chat, user, [image_bytes("red"), image_bytes("blue")])

    await bot_api.wait_for_bot_message(chat)
    await bot_api.wait_quiet(quiet=1.5)
    assert len(bot_api.bot_messages(chat)) == 1
    [user_turn, _] = await history(application, chat.id, USER_ID)
    assert user_turn.text == texts.DEFAULT_IMAGE_INSTRUCTION and len(user_turn.images) == 2


async def test_message_sent_right_after_an_album_is_answered_after_it(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_album(chat, user, [image_bytes("red"), image_bytes("green")], caption="two photos")
    await bot_api.send_text(chat, user, "and which one is green?")

    await bot_api.wait_for_bot_message(chat, count=2)
    turns = await history(application, chat.id, USER_ID)
    assert [(turn.role, turn.text if turn.role == "user" else "") for turn in turns] == [
        ("user", "two photos"),
        ("assistant", ""),
        ("user", "and which one is green?"),
        ("assistant", ""),
    ]
    follow_up = services[0].conversations[-1]
    assert len(images_of(follow_up.turns[0])) == 2, "the follow-up sees the album"


async def test_album_over_the_image_cap_uses_the_first_images_and_says_so(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory, max_images_in_prompt=2)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_album(chat, user, [image_bytes(colour) for colour in COLOURS], caption="compare")

    note, _ = await bot_api.wait_for_bot_message(chat, count=2)
    assert note.text == texts.ALBUM_TOO_MANY.format(limit=2, count=3)
    [user_turn, _] = await history(application, chat.id, USER_ID)
    assert [stored_colour(image) for image in user_turn.images] == ["red", "green"]
    assert [dominant_colour(image) for image in images_of(services[0].conversations[0].turns[-1])] == [
        "red",
        "green",
    ]


async def test_group_album_with_a_caption_mentioning_the_bot_is_answered_once(bot_api, start_bot):
    application = await start_bot()
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann")
    sent = await bot_api.send_album(
        group, ann, [image_bytes("red"), image_bytes("blue")], caption=f"{BOT} what differs?", caption_index=1
    )

    [answer] = await bot_api.wait_for_bot_message(group)
    await bot_api.wait_quiet(quiet=1.5)
    assert len(bot_api.bot_messages(group)) == 1
    assert answer.reply_to_message_id == sent[1]["message_id"], "the answer quotes the captioned photo"
    [user_turn, _] = await history(application, GROUP_ID, ANN)
    assert user_turn.text == "what differs?" and len(user_turn.images) == 2


async def test_group_album_nobody_asked_the_bot_about_is_ignored(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    group, bob = bot_api.group_chat(GROUP_ID), bot_api.user(BOB, "Bob")
    await bot_api.send_album(group, bob, [image_bytes("red"), image_bytes("blue")], caption="holiday pics")
    await bot_api.send_album(group, bob, [image_bytes("green"), image_bytes("blue")])

    await bot_api.wait_quiet(quiet=2.0)
    assert bot_api.bot_messages(group) == []
    assert services[0].conversations == []
    assert (await runtime(application).store.stats()).turns == 0
    assert await runtime(application).store.inbox.waiting_count() == 0, "both albums are done with"


async def test_album_captioned_with_a_task_command_runs_the_task_on_all_its_images(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_album(chat, user, [image_bytes("red"), image_bytes("blue")], caption="/caption")

    await bot_api.wait_for_bot_message(chat)
    [user_turn, _] = await history(application, chat.id, USER_ID)
    assert user_turn.text == texts.CAPTION_INSTRUCTION and len(user_turn.images) == 2
    assert services[0].params[0].max_new_tokens <= 40
