"""The whole bot against Telegram's rough edges: a 429 mid-answer, and the token kept out of DEBUG logs."""

from __future__ import annotations

import logging

import pytest

from bot.logging_setup import install_token_redaction
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, runtime

USER_ID = 6001


async def test_injected_429_on_the_final_message_is_waited_out_and_the_answer_arrives(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert bot_api.served_429s == 1
    await answers_settled(application)
    store = runtime(application).store
    history = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert history[-1].status is TurnStatus.COMPLETE
    assert history[-1].message_ids == (answer.message_id,)


@pytest.fixture
def token_redaction(bot_api):
    original = logging.getLogRecordFactory()
    install_token_redaction([bot_api.token])
    yield
    logging.setLogRecordFactory(original)


async def test_token_never_reaches_the_logs_even_at_debug(bot_api, start_bot, token_redaction, caplog):
    caplog.set_level(logging.DEBUG)
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("blue"))  # getFile + file download
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    await start_bot.stop(application)

    logged = caplog.text
    assert "getUpdates" in logged and "sendMessage" in logged, "the HTTP client did log its requests"
    secret = bot_api.token.split(":", 1)[1]
    assert bot_api.token not in logged
    assert secret not in logged
