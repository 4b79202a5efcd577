"""The bot against a Bot API server that does less than Telegram: missing methods, refusals, odd shapes.

A self-hosted or stand-in server may not implement drafts, chat actions, the command menu, button
answers or member look-ups, may hand out file paths as whole URLs, and may send updates this version
of python-telegram-bot cannot read. None of that may cost a person their answer or stop the bot.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot import texts
from bot.answer_keyboard import NEW_CONVERSATION_DATA, REGENERATE_DATA
from storage.types import TurnStatus
from tests.bot.bot_process import ask_a_running_bot, bot_environment
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime
from standin.telegram import methods as standin_methods
from standin.telegram.server import BotApiStandIn

USER_ID = 8201
GROUP_ID = -1008201
ALWAYS = 1000


def not_found(bot_api: BotApiStandIn, *methods: str) -> None:
    """Make the server answer these methods 404 "Not Found", as one that lacks them does."""
    for method in methods:
        bot_api.fail_next(method, 404, "Not Found", times=ALWAYS)


async def complete_history(application, chat_id: int, user_id: int):
    await answers_settled(application)
    store = runtime(application).store
    return await store.history((await store.active_conversation(chat_id, user_id)).id)


async def test_a_server_without_set_my_commands_still_runs_the_bot(bot_api, start_bot, caplog):
    not_found(bot_api, "setMyCommands")
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.message_id in (await complete_history(application, chat.id, USER_ID))[-1].message_ids
    assert any("setMyCommands" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("status", [400, 404])
async def test_answers_arrive_without_drafts_or_chat_actions(bot_api, start_bot, status):
    for method in ("sendMessageDraft", "sendChatAction"):
        bot_api.fail_next(method, status, "Not Found" if status == 404 else "Bad Request: unsupported",
                          times=ALWAYS)
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    *_, turn = await complete_history(application, chat.id, USER_ID)
    assert turn.status is TurnStatus.COMPLETE and answer.message_id in turn.message_ids
    assert bot_api.drafts(chat) == []


async def test_buttons_work_when_the_server_refuses_to_answer_callback_queries(bot_api, start_bot):
    not_found(bot_api, "answerCallbackQuery")
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    [answer] = await bot_api.wait_for_bot_message(chat)
    old = await complete_history(application, chat.id, USER_ID)

    await bot_api.press_button(chat, user, answer, NEW_CONVERSATION_DATA)
    await bot_api.wait_for(lambda: bot_api.calls_to("answerCallbackQuery"))
    await answers_settled(application)
    await bot_api.wait_quiet()

    assert await complete_history(application, chat.id, USER_ID) != old, "a new conversation began"
    assert [m.text for m in bot_api.bot_messages(chat)][1:] == [], "no apology for a refused answer"


async def test_regenerate_works_when_old_buttons_cannot_be_removed(bot_api, start_bot):
    not_found(bot_api, "editMessageReplyMarkup")
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    [answer] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)

    await bot_api.press_button(chat, user, answer, REGENERATE_DATA)
    _, again = await bot_api.wait_for_bot_message(chat, count=2)
    *_, turn = await complete_history(application, chat.id, USER_ID)
    assert turn.status is TurnStatus.COMPLETE and turn.message_ids == (again.message_id,)


async def test_settings_buttons_in_a_group_refuse_politely_without_get_chat_member(bot_api, start_bot):
    not_found(bot_api, "getChatMember")
    await start_bot()
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    await bot_api.send_text(group, user, "/settings")
    [menu] = await bot_api.wait_for_bot_message(group)

    query = await bot_api.press_button(group, user, menu, menu.buttons[0][1])
    answer = await bot_api.wait_for(lambda: bot_api.callback_answers.get(query["id"]))
    assert answer["text"] == texts.GROUP_ADMINS_ONLY


async def test_a_file_path_given_as_a_whole_url_is_downloaded(bot_api, start_bot, monkeypatch):
    plain = standin_methods.METHODS["getfile"]

    async def get_file_with_url(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
        found = await plain(server, params)
        return {**found, "file_path": f"{server.base_file_url}{server.token}/{found['file_path']}"}

    monkeypatch.setitem(standin_methods.METHODS, "getfile", get_file_with_url)
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.text != texts.IMAGE_DOWNLOAD_FAILED
    question, _ = await complete_history(application, chat.id, USER_ID)
    assert len(question.images) == 1


async def test_an_update_this_library_cannot_read_is_skipped_and_the_next_one_answered(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    old_poll = bot_api.new_message(chat, user)  # a poll as servers wrote it before Bot API 9.6
    old_poll["poll"] = {
        "id": "1", "question": "Cats?", "options": [{"text": "Yes", "voter_count": 0}],
        "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
        "allows_multiple_answers": False,
    }
    bot_api.store.add(old_poll)
    bot_api.updates.push("message", old_poll)
    await bot_api.send_text(chat, user, "hello?")

    answer = await bot_api.wait_for_bot_message(chat, timeout=10)
    assert answer[-1].text not in (texts.UNEXPECTED_ERROR, texts.ONLY_IMAGES)
    *_, turn = await complete_history(application, chat.id, USER_ID)
    assert turn.status is TurnStatus.COMPLETE


async def test_a_server_without_delete_webhook_still_runs_the_bot(bot_api, start_bot):
    not_found(bot_api, "deleteWebhook")
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"))

    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)


async def test_idefics_bot_run_answers_through_a_server_that_lacks_the_optional_methods(
    bot_api, database_url, tiny_checkpoint, tmp_path
):
    not_found(bot_api, "setMyCommands", "deleteWebhook", "sendMessageDraft", "sendChatAction")
    # The root given with a trailing slash, as people paste it.
    environment = bot_environment(
        bot_api, database_url, tiny_checkpoint, TELEGRAM_API_URL=bot_api.api_root + "/"
    )
    run = await ask_a_running_bot(
        bot_api, environment, tmp_path, user_id=USER_ID, ready=lambda: bot_api.calls_to("getUpdates")
    )
    answer, log = run.answer, run.log
    assert run.returncode == 0, log[-3000:]
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)


async def test_an_api_url_given_with_its_bot_path_still_reaches_the_server(bot_api, start_bot):
    """TELEGRAM_API_URL is the server's root; people also paste the `/bot` endpoint, or a stray space."""
    application = await start_bot(telegram_api_url=f" {bot_api.api_root}/bot/ ")
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    question, _ = await complete_history(application, chat.id, USER_ID)
    assert len(question.images) == 1 and answer.message_id


async def test_a_file_without_a_path_is_a_download_apology_and_the_question_is_kept(
    bot_api, start_bot, monkeypatch
):
    plain = standin_methods.METHODS["getfile"]

    async def get_file_without_path(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
        found = await plain(server, params)
        return {key: value for key, value in found.items() if key != "file_path"}

    monkeypatch.setitem(standin_methods.METHODS, "getfile", get_file_without_path)
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.text == texts.IMAGE_DOWNLOAD_FAILED
    [question] = await complete_history(application, chat.id, USER_ID)
    assert (question.text, question.status) == ("what is it?", TurnStatus.FAILED)


@pytest.mark.parametrize("status", [400, 404])
async def test_a_group_answer_arrives_when_the_server_cannot_edit_messages(bot_api, start_bot, status):
    bot_api.fail_next("editMessageText", status, "Not Found" if status == 404 else "Bad Request: unsupported",
                      times=ALWAYS)
    factory, _ = recording_factory(delay_s=0.3)  # slow enough that a preview is shown before the end
    application = await start_bot(model_service_factory=factory, max_new_tokens=12, stream_edit_interval_s=0.2)
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    await bot_api.send_text(group, user, "@idefics_test_bot hello there")

    await answers_settled(application)
    await bot_api.wait_quiet()
    *_, turn = await complete_history(application, group.id, USER_ID)
    assert turn.status is TurnStatus.COMPLETE
    shown = [m for m in bot_api.bot_messages(group) if m.message_id in turn.message_ids]
    assert shown and shown[-1].text == (turn.text.strip() or texts.EMPTY_ANSWER)
    assert [m.buttons for m in shown][-1], "the final message carries the answer buttons"
    previews = [m for m in bot_api.bot_messages(group, include_deleted=True) if m.deleted]
    assert previews, "the preview that could not be edited into the answer was removed"
