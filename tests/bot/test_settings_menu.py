"""/settings end to end: answer length and creativity per chat, stored, shown in a menu edited in place,
applied to what the model is asked; stale stored values and forged presses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import texts
from bot.chat_preferences import (
    BALANCED_TEMPERATURE,
    LENGTH_SHARES,
    ChatPreferences,
    generation_params,
)
from bot.lifecycle import create_model_backend
from bot.settings import Settings
from model.types import GenerationParams
from storage.types import TurnStatus
from tests.bot.button_presses import BOT, button_data, callback_answer, press_forged
from tests.bot.conftest import RecordingModelService, answers_settled, runtime

ANN, BOB = 6001, 6002
GROUP_ID = -100600700
MAX_NEW_TOKENS = 16


class ParamsRecordingService(RecordingModelService):
    """The real service, also recording the generation settings each answer was asked with."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params: list[GenerationParams] = []

    async def stream(self, conversation, params: GenerationParams):
        self.params.append(params)
        async for event in super().stream(conversation, params):
            yield event


def params_recording_factory() -> tuple[Callable, list[ParamsRecordingService]]:
    made: list[ParamsRecordingService] = []

    async def factory(settings: Settings) -> ParamsRecordingService:
        plain = await create_model_backend(settings)
        service = ParamsRecordingService(
            plain.loaded, max_batch_size=settings.max_batch_size, max_images=settings.max_images_in_prompt
        )
        made.append(service)
        return service

    return factory, made


async def open_settings(bot_api, chat, user, command: str = "/settings"):
    before = len(bot_api.bot_messages(chat))
    await bot_api.send_text(chat, user, command)
    return (await bot_api.wait_for_bot_message(chat, count=before + 1))[-1]


async def ask(bot_api, application, chat, user, text: str = "what is this?") -> None:
    before = len(bot_api.bot_messages(chat))
    await bot_api.send_text(chat, user, text)
    await bot_api.wait_for_bot_message(chat, count=before + 1)
    await answers_settled(application)


async def test_settings_shows_the_current_values_and_a_press_edits_the_menu_in_place(bot_api, start_bot):
    application = await start_bot(max_new_tokens=MAX_NEW_TOKENS)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_settings(bot_api, chat, ann)
    assert f"Answer length: Long (up to {MAX_NEW_TOKENS} tokens)" in menu.text
    assert "Creativity: Precise" in menu.text and "Mode: default" in menu.text
    assert {"✅ Long", "✅ Precise", "Short", "Creative"} <= {label for label, _ in menu.buttons}

    query = await bot_api.press_button(chat, ann, menu, button_data(menu, "Short"))

    assert await callback_answer(bot_api, query) == texts.SETTING_SAVED.format(label="Short")
    await bot_api.wait_for(lambda: menu.edits)
    assert "Answer length: Short (up to 2 tokens)" in menu.text
    assert "✅ Short" in [label for label, _ in menu.buttons] and "Long" in [
        label for label, _ in menu.buttons
    ]
    assert len(bot_api.bot_messages(chat)) == 1, "the menu is edited, not sent again"
    assert (await runtime(application).store.chat_settings(ANN))["length"] == "short"


async def test_chosen_length_and_creativity_are_what_the_model_is_asked_for(bot_api, start_bot):
    factory, services = params_recording_factory()
    application = await start_bot(model_service_factory=factory, max_new_tokens=MAX_NEW_TOKENS)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    await ask(bot_api, application, chat, ann)
    menu = await open_settings(bot_api, chat, ann)
    for label in ("Short", "Creative"):
        await callback_answer(bot_api, await bot_api.press_button(chat, ann, menu, button_data(menu, label)))

    await ask(bot_api, application, chat, ann)

    before, after = services[0].params
    assert (before.max_new_tokens, before.do_sample) == (MAX_NEW_TOKENS, False)
    settings = runtime(application).settings
    assert (after.max_new_tokens, after.do_sample) == (2, True)
    assert (after.temperature, after.top_p) == (settings.story_temperature, settings.story_top_p)
    store = runtime(application).store
    history = await store.history((await store.active_conversation(ANN, ANN)).id)
    last_answer = [turn for turn in history if turn.role == "assistant"][-1]
    assert last_answer.status is TurnStatus.COMPLETE and last_answer.completion_tokens <= 2


async def test_stale_stored_settings_fall_back_to_the_defaults(bot_api, start_bot):
    factory, services = params_recording_factory()
    application = await start_bot(model_service_factory=factory, max_new_tokens=MAX_NEW_TOKENS)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    store = runtime(application).store
    await store.update_chat_settings(ANN, length="enormous", creativity=7, mode=["not", "a", "name"])

    menu = await open_settings(bot_api, chat, ann)
    await ask(bot_api, application, chat, ann)
    query = await bot_api.press_button(chat, ann, menu, button_data(menu, "Balanced"))

    assert "Answer length: Long" in menu.text and "Creativity: Precise" in menu.text
    assert "Mode: default" in menu.text
    assert (services[0].params[-1].max_new_tokens, services[0].params[-1].do_sample) == (
        MAX_NEW_TOKENS,
        False,
    )
    assert await callback_answer(bot_api, query) == texts.SETTING_SAVED.format(label="Balanced")
    await bot_api.wait_for(lambda: "Creativity: Balanced" in menu.text)
    assert "Answer length: Long" in menu.text


async def test_forged_settings_presses_change_nothing(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_settings(bot_api, chat, ann)

    answers = [
        await callback_answer(bot_api, press_forged(bot_api, chat, ann, menu, data))
        for data in ("settings:length:huge", "settings:volume:11", "settings:", "settings:length")
    ]

    assert answers == [texts.BUTTON_EXPIRED] * 4
    assert await runtime(application).store.chat_settings(ANN) == {}
    assert not menu.edits


async def test_group_member_who_is_not_an_admin_cannot_change_the_settings(bot_api, start_bot):
    application = await start_bot()
    group, ann, bob = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    menu = await open_settings(bot_api, group, ann, f"/settings{BOT}")

    query = await bot_api.press_button(group, bob, menu, button_data(menu, "Creative"))

    assert await callback_answer(bot_api, query) == texts.GROUP_ADMINS_ONLY
    assert await runtime(application).store.chat_settings(GROUP_ID) == {}


async def test_every_length_stays_within_the_bots_max_new_tokens(make_settings):
    for limit in (1, 7, 512, 2048):
        settings = make_settings(max_new_tokens=limit)
        tokens = [
            generation_params(ChatPreferences(length=length), settings).max_new_tokens
            for length in LENGTH_SHARES
        ]
        assert all(1 <= count <= limit for count in tokens) and tokens == sorted(tokens)
    balanced = generation_params(ChatPreferences(creativity="balanced"), make_settings())
    assert (balanced.do_sample, balanced.temperature) == (True, BALANCED_TEMPERATURE)
