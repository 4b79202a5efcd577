"""ALLOWED_USER_IDS / ALLOWED_CHAT_IDS: outsiders get one polite refusal and never reach the model."""

from __future__ import annotations

from bot import texts
from tests.bot.button_presses import callback_answer
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

ALLOWED, STRANGER, ADMIN = 3001, 3002, 3003


async def test_user_not_on_the_allow_list_is_refused_once_and_the_model_is_never_called(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(
        model_service_factory=factory,
        allowed_user_ids=frozenset({ALLOWED}),
        admin_user_ids=frozenset({ADMIN}),
    )
    chat, stranger = bot_api.private_chat(STRANGER), bot_api.user(STRANGER)
    await bot_api.send_photo(chat, stranger, image_bytes("red"), caption="what is this?")
    await bot_api.send_text(chat, stranger, "hello?")
    await bot_api.send_text(chat, stranger, "/new")
    await bot_api.wait_quiet(quiet=1.0)

    assert [message.text for message in bot_api.bot_messages(chat)] == [texts.NOT_ALLOWED]
    assert services[0].conversations == []
    assert bot_api.calls_to("getFile") == []
    assert (await runtime(application).store.stats()).turns == 0


async def test_allowed_users_and_admins_are_answered(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(
        model_service_factory=factory,
        allowed_user_ids=frozenset({ALLOWED}),
        admin_user_ids=frozenset({ADMIN}),
    )
    for user_id in (ALLOWED, ADMIN):
        await bot_api.send_text(bot_api.private_chat(user_id), bot_api.user(user_id), "hi there")
        [answer] = await bot_api.wait_for_bot_message(user_id)
        assert answer.text != texts.NOT_ALLOWED
    await answers_settled(application)
    assert len(services[0].conversations) == 2


async def test_allowed_chat_lets_every_member_in_but_not_their_private_chats(bot_api, start_bot):
    group_id = -100777
    await start_bot(allowed_chat_ids=frozenset({group_id}))
    group, member = bot_api.group_chat(group_id), bot_api.user(STRANGER, "Sam")
    await bot_api.send_text(group, member, "@idefics_test_bot hello")
    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.text != texts.NOT_ALLOWED

    await bot_api.send_text(bot_api.private_chat(STRANGER), member, "hello in private")
    [refusal] = await bot_api.wait_for_bot_message(STRANGER)
    assert refusal.text == texts.NOT_ALLOWED


async def test_every_press_of_a_refused_stranger_is_answered(bot_api, start_bot):
    """In a group, a stranger can press the buttons an allowed user got; none may spin forever."""
    await start_bot(allowed_user_ids=frozenset({ALLOWED}))
    group = bot_api.group_chat(-100778)
    allowed, stranger = bot_api.user(ALLOWED, "Ann"), bot_api.user(STRANGER, "Sam")
    await bot_api.send_text(group, allowed, "/settings@idefics_test_bot")
    [menu] = await bot_api.wait_for_bot_message(group)

    presses = [await bot_api.press_button(group, stranger, menu, menu.buttons[0][1]) for _ in range(4)]

    answers = [await callback_answer(bot_api, press) for press in presses]
    assert answers == [texts.NOT_ALLOWED] * 4
    assert bot_api.open_callback_queries == set()
    assert [m.text for m in bot_api.bot_messages(group)] == [menu.text], "and nothing in the chat"
