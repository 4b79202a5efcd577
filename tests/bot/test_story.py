"""/story end to end: a streamed, sampled story about a photo, with the storyteller preamble."""

from __future__ import annotations

from bot import texts
from bot.commands.story import story_instruction
from model.types import TextPart
from storage.types import TurnStatus
from tests.bot.conftest import image_bytes
from tests.bot.task_helpers import dominant_colour, history, images_of, stored_colour, task_factory

USER_ID = 5501
GROUP_ID = -100550550


async def test_story_with_a_theme_is_sampled_with_the_story_settings_and_streamed(bot_api, start_bot):
    factory, services = task_factory(delay_s=0.1)
    application = await start_bot(
        model_service_factory=factory, max_new_tokens=16, story_temperature=0.7, story_top_p=0.5
    )
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("blue"), caption="/story a pirate adventure")

    [answer] = await bot_api.wait_for_bot_message(chat)
    [params] = services[0].params
    assert (params.do_sample, params.temperature, params.top_p) == (True, 0.7, 0.5)
    assert params.max_new_tokens == 16
    [asked] = services[0].conversations
    assert asked.preamble is not None and asked.preamble.name == "storyteller"
    assert asked.turns[-1].parts[-1] == TextPart(story_instruction("a pirate adventure"))
    assert bot_api.drafts(chat), "the story is streamed like any answer"
    user_turn, assistant_turn = await history(application, chat.id, USER_ID)
    assert [stored_colour(image) for image in user_turn.images] == ["blue"]
    assert (
        user_turn.text == story_instruction("a pirate adventure") and "a pirate adventure" in user_turn.text
    )
    assert assistant_turn.status is TurnStatus.COMPLETE
    assert answer.text == (assistant_turn.text.strip() or texts.EMPTY_ANSWER)


async def test_story_without_a_photo_uses_the_conversations_last_image(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="what is this?")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "/story")

    await bot_api.wait_for_bot_message(chat, count=2)
    asked = services[0].conversations[-1]
    assert asked.turns[-1].parts == (TextPart(texts.STORY_INSTRUCTION),)
    assert [dominant_colour(image) for image in images_of(asked.turns[0])] == ["red"]
    assert services[0].params[-1].do_sample
    assert [turn.role for turn in await history(application, chat.id, USER_ID)] == ["user", "assistant"] * 2


async def test_story_replying_to_a_photo_in_a_group_tells_a_story_about_it(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    photo = await bot_api.send_photo(group, bot_api.user(5511, "Ann"), image_bytes("green"))
    await bot_api.send_text(
        group, bot_api.user(5512, "Bob"), "/story@idefics_test_bot dragons", reply_to=photo
    )

    await bot_api.wait_for_bot_message(group)
    [asked] = services[0].conversations
    assert [dominant_colour(image) for image in images_of(asked.turns[-1])] == ["green"]


async def test_story_with_no_image_anywhere_gets_the_usage_reply(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_text(chat, user, "hello")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "/story about the sea")

    _, reply = await bot_api.wait_for_bot_message(chat, count=2)
    assert reply.text == texts.STORY_USAGE
    assert len(services[0].conversations) == 1
