"""A basic group upgraded to a supergroup: its members' conversations follow it to the new chat id."""

from __future__ import annotations

from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime
from tests.bot.task_helpers import images_of

ANN, BOB = 6401, 6402
BASIC, SUPER = -6400, -1006400


async def test_after_the_upgrade_the_conversation_goes_on_with_its_photo_and_settings(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    group, ann = bot_api.basic_group(BASIC), bot_api.user(ANN, "Ann")
    await bot_api.send_photo(group, ann, image_bytes("red"), caption="@idefics_test_bot what is this?")
    await bot_api.wait_for_bot_message(group)
    await answers_settled(application)
    store = runtime(application).store
    await store.update_chat_settings(BASIC, length="short")

    supergroup = bot_api.migrate(group, SUPER, by=bot_api.user(BOB, "Bob"))
    await bot_api.send_text(supergroup, ann, "@idefics_test_bot and what colour was it?")
    [answer] = await bot_api.wait_for_bot_message(supergroup)
    await answers_settled(application)

    asked = services[0].conversations[-1]
    assert len(asked.turns) == 3 and len(images_of(asked.turns[0])) == 1, "the photo is still known"
    conversation = await store.active_conversation(SUPER, ANN)
    assert [turn.role for turn in await store.history(conversation.id)] == ["user", "assistant"] * 2
    assert answer.message_id in (await store.history(conversation.id))[-1].message_ids
    assert await store.chat_settings(SUPER) == {"length": "short"}
