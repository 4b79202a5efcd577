"""/mode end to end: listing the few-shot modes, switching a chat's mode with buttons, admin mode files,
who may switch in groups, and stale or forged presses."""

from __future__ import annotations

from pathlib import Path

from bot import texts
from tests.bot.button_presses import (
    BOT,
    button_data,
    callback_answer,
    make_group_admins,
    press_forged,
)
from tests.bot.conftest import answers_settled, recording_factory, runtime

ANN, BOB, BOT_ADMIN = 5001, 5002, 5003
GROUP_ID = -100500600

PIRATE_MODE = """
name = "pirate"
description = "Answers like a friendly pirate"
text = "Assistant is a friendly pirate who describes images in pirate talk."

[[examples]]
role = "user"
text = "Hello!"

[[examples]]
role = "assistant"
text = "Ahoy, matey!"
"""


def admin_modes_dir(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "modes"
    folder.mkdir(exist_ok=True)
    for stem, content in files.items():
        (folder / f"{stem}.toml").write_text(content, encoding="utf-8")
    return folder


async def open_mode_menu(bot_api, chat, user, command: str = "/mode"):
    before = len(bot_api.bot_messages(chat))
    await bot_api.send_text(chat, user, command)
    messages = await bot_api.wait_for_bot_message(chat, count=before + 1)
    return messages[-1]


async def test_mode_lists_builtin_and_admin_modes_and_marks_the_current_one(
    bot_api, start_bot, tmp_path, caplog
):
    folder = admin_modes_dir(tmp_path, pirate=PIRATE_MODE, broken="name = [unclosed")
    await start_bot(modes_dir=folder)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)

    menu = await open_mode_menu(bot_api, chat, ann)

    assert menu.text.startswith("Mode for this chat: default")
    for name in ("default", "captioner", "storyteller", "pirate"):
        assert f"• {name} — " in menu.text
    assert "Answers like a friendly pirate" in menu.text
    labels = [label for label, _ in menu.buttons]
    assert "✅ default" in labels and "captioner" in labels and "pirate" in labels
    assert texts.NO_PREAMBLE_BUTTON in labels
    assert not any("broken" in label for label in labels)
    assert any(
        "Skipping mode file" in r.getMessage() and "broken.toml" in r.getMessage() for r in caplog.records
    )


async def test_a_mode_file_dropped_into_modes_dir_is_offered_without_a_restart(bot_api, start_bot, tmp_path):
    folder = admin_modes_dir(tmp_path)
    await start_bot(modes_dir=folder)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    first = await open_mode_menu(bot_api, chat, ann)
    admin_modes_dir(tmp_path, pirate=PIRATE_MODE)

    second = await open_mode_menu(bot_api, chat, ann)

    assert "pirate" not in first.text
    assert "pirate" in [label for label, _ in second.buttons]


async def test_pressing_a_mode_switches_the_chat_and_changes_what_the_model_sees(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    store = runtime(application).store
    await bot_api.send_text(chat, ann, "what do you see?")
    await bot_api.wait_for_bot_message(chat)
    menu = await open_mode_menu(bot_api, chat, ann)

    query = await bot_api.press_button(chat, ann, menu, button_data(menu, "captioner"))

    assert await callback_answer(bot_api, query) == texts.MODE_SET.format(name="captioner")
    edited = await bot_api.wait_for(lambda: "✅ captioner" in [label for label, _ in menu.buttons] and menu)
    assert edited.text.startswith("Mode for this chat: captioner") and edited.edits
    assert (await store.chat_settings(ANN))["mode"] == "captioner"
    await bot_api.send_text(chat, ann, "/new")
    await bot_api.send_text(chat, ann, "what do you see?")
    await bot_api.wait_for_bot_message(chat, count=4)
    await answers_settled(application)
    before, after = services[0].conversations[0], services[0].conversations[-1]
    assert (before.preamble.name, after.preamble.name) == ("default", "captioner")
    answers = [await store.turn_for_message(ANN, m.message_id) for m in bot_api.bot_messages(chat)]
    prompt_tokens = [turn.prompt_tokens for turn in answers if turn and turn.role == "assistant"]
    assert prompt_tokens[0] != prompt_tokens[-1], "a different preamble makes a different prompt"


async def test_no_preamble_button_leaves_the_preamble_out(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_mode_menu(bot_api, chat, ann)

    query = await bot_api.press_button(chat, ann, menu, button_data(menu, texts.NO_PREAMBLE_BUTTON))
    await callback_answer(bot_api, query)
    await bot_api.send_text(chat, ann, "hello")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    assert services[0].conversations[-1].preamble is None
    assert f"{texts.CURRENT_CHOICE_MARK}{texts.NO_PREAMBLE_BUTTON}" in [label for label, _ in menu.buttons]


async def test_prompt_preamble_none_means_the_default_exchange_has_no_preamble(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory, prompt_preamble="none")
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_mode_menu(bot_api, chat, ann)
    await bot_api.send_text(chat, ann, "hello")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    assert menu.text.startswith("Mode for this chat: none")
    assert f"{texts.CURRENT_CHOICE_MARK}{texts.NO_PREAMBLE_BUTTON}" in [label for label, _ in menu.buttons]
    assert services[0].conversations[-1].preamble is None


async def test_prompt_preamble_naming_a_file_is_the_default_and_can_be_chosen_again(
    bot_api, start_bot, tmp_path
):
    mode_file = tmp_path / "house.toml"
    mode_file.write_text(PIRATE_MODE.replace('"pirate"', '"house"'), encoding="utf-8")
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory, prompt_preamble=str(mode_file))
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_mode_menu(bot_api, chat, ann)
    await callback_answer(
        bot_api, await bot_api.press_button(chat, ann, menu, button_data(menu, "captioner"))
    )
    await callback_answer(bot_api, await bot_api.press_button(chat, ann, menu, button_data(menu, "house")))
    await bot_api.send_text(chat, ann, "hello")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    assert menu.text.startswith("Mode for this chat: house")
    assert services[0].conversations[-1].preamble.name == "house"


async def test_a_mode_removed_after_the_menu_was_shown_no_longer_exists(bot_api, start_bot, tmp_path):
    folder = admin_modes_dir(tmp_path, pirate=PIRATE_MODE)
    application = await start_bot(modes_dir=folder)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_mode_menu(bot_api, chat, ann)
    (folder / "pirate.toml").unlink()

    query = await bot_api.press_button(chat, ann, menu, button_data(menu, "pirate"))

    assert await callback_answer(bot_api, query) == texts.MODE_GONE
    assert "mode" not in await runtime(application).store.chat_settings(ANN)


async def test_forged_mode_and_unknown_button_data_are_refused_without_a_crash(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    menu = await open_mode_menu(bot_api, chat, ann)

    forged_mode = press_forged(bot_api, chat, ann, menu, "mode:../../etc/passwd")
    unknown = press_forged(bot_api, chat, ann, menu, "launch:missiles")

    assert await callback_answer(bot_api, forged_mode) == texts.MODE_GONE
    assert await callback_answer(bot_api, unknown) == texts.BUTTON_EXPIRED
    assert await runtime(application).store.chat_settings(ANN) == {}


async def test_stale_stored_mode_falls_back_to_the_default(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)
    await runtime(application).store.update_chat_settings(ANN, mode="deleted-long-ago")

    menu = await open_mode_menu(bot_api, chat, ann)
    await bot_api.send_text(chat, ann, "hello")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    assert menu.text.startswith("Mode for this chat: default")
    assert services[0].conversations[-1].preamble.name == "default"


async def test_group_member_who_is_not_an_admin_cannot_switch_the_mode(bot_api, start_bot):
    application = await start_bot()
    group, ann, bob = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")
    menu = await open_mode_menu(bot_api, group, ann, f"/mode{BOT}")

    query = await bot_api.press_button(group, bob, menu, button_data(menu, "storyteller"))

    assert await callback_answer(bot_api, query) == texts.GROUP_ADMINS_ONLY
    assert "mode" not in await runtime(application).store.chat_settings(GROUP_ID)
    assert not menu.edits


async def test_group_admin_and_bot_admin_can_switch_the_mode(bot_api, start_bot, monkeypatch):
    make_group_admins(monkeypatch, ANN)
    application = await start_bot(admin_user_ids=frozenset({BOT_ADMIN}))
    group = bot_api.group_chat(GROUP_ID)
    ann, bot_admin = bot_api.user(ANN, "Ann"), bot_api.user(BOT_ADMIN, "Root")
    store = runtime(application).store
    menu = await open_mode_menu(bot_api, group, ann, f"/mode{BOT}")

    by_group_admin = await bot_api.press_button(group, ann, menu, button_data(menu, "storyteller"))
    assert await callback_answer(bot_api, by_group_admin) == texts.MODE_SET.format(name="storyteller")
    assert (await store.chat_settings(GROUP_ID))["mode"] == "storyteller"
    by_bot_admin = await bot_api.press_button(group, bot_admin, menu, button_data(menu, "captioner"))
    assert await callback_answer(bot_api, by_bot_admin) == texts.MODE_SET.format(name="captioner")
    assert (await store.chat_settings(GROUP_ID))["mode"] == "captioner"


async def test_mode_with_a_name_switches_the_chat_and_the_model_sees_it(bot_api, start_bot):
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory)
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)

    reply = await open_mode_menu(bot_api, chat, ann, "/mode Storyteller")
    await bot_api.send_text(chat, ann, "tell me about it")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)

    assert reply.text == texts.MODE_SET.format(name="storyteller")
    assert (await runtime(application).store.chat_settings(ANN))["mode"] == "storyteller"
    assert services[0].conversations[-1].preamble.name == "storyteller"


async def test_mode_with_an_unknown_name_says_so_and_lists_the_names(bot_api, start_bot):
    application = await start_bot()
    chat, ann = bot_api.private_chat(ANN), bot_api.user(ANN)

    reply = await open_mode_menu(bot_api, chat, ann, "/mode pirate " + "x" * 500)

    assert reply.text.startswith("There is no mode called “pirate xxx")
    assert len(reply.text) < 200, "a long name is not quoted back whole"
    assert reply.text.endswith("The modes are: captioner, default, storyteller, none.")
    assert await runtime(application).store.chat_settings(ANN) == {}


async def test_group_member_who_is_not_an_admin_cannot_switch_the_mode_by_name(bot_api, start_bot, monkeypatch):
    make_group_admins(monkeypatch, ANN)
    application = await start_bot()
    group, ann, bob = bot_api.group_chat(GROUP_ID), bot_api.user(ANN, "Ann"), bot_api.user(BOB, "Bob")

    refused = await open_mode_menu(bot_api, group, bob, f"/mode{BOT} captioner")
    assert refused.text == texts.GROUP_ADMINS_ONLY
    assert "mode" not in await runtime(application).store.chat_settings(GROUP_ID)
    switched = await open_mode_menu(bot_api, group, ann, f"/mode{BOT} captioner")
    assert switched.text == texts.MODE_SET.format(name="captioner")
    assert (await runtime(application).store.chat_settings(GROUP_ID))["mode"] == "captioner"


async def test_mode_and_settings_are_registered_commands_and_explained_in_help(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(ANN)
    await bot_api.send_text(chat, bot_api.user(ANN), "/help")
    [reply] = await bot_api.wait_for_bot_message(chat)

    assert {"mode", "settings"} <= {command["command"] for command in bot_api.my_commands()}
    assert "/mode" in reply.text and "/settings" in reply.text and "Regenerate" in reply.text
