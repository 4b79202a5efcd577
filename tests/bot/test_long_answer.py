"""Answers longer than one Telegram message (4096 characters) continue in further messages, nothing lost."""

from __future__ import annotations

import re

import pytest

from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, runtime

USER_ID = 4242
TELEGRAM_LIMIT = 4096
# The chatty tiny checkpoint writes " the" per token: 1300 tokens are about 5200 characters.
LONG_ANSWER_TOKENS = 1300


def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


@pytest.mark.parametrize("chat_kind", ["private", "group"])
async def test_long_answer_continues_in_further_messages(bot_api, start_bot, tiny_checkpoint_chatty, chat_kind):
    application = await start_bot(model_id=str(tiny_checkpoint_chatty), max_new_tokens=LONG_ANSWER_TOKENS)
    user = bot_api.user(USER_ID, "Lea")
    if chat_kind == "private":
        chat = bot_api.private_chat(USER_ID, "Lea")
        await bot_api.send_photo(chat, user, image_bytes("purple"), caption="Tell me everything.")
    else:
        chat = bot_api.group_chat(-100777, "Long talk")
        await bot_api.send_photo(chat, user, image_bytes("purple"), caption="@idefics_test_bot tell me everything")

    await bot_api.wait_for_bot_message(chat, count=2, timeout=120)
    await answers_settled(application, timeout=120)
    await bot_api.wait_quiet(quiet=1.0, timeout=60)

    store = runtime(application).store
    conversation = await store.active_conversation(chat.id, USER_ID)
    _, answer_turn = await store.history(conversation.id)
    assert answer_turn.status is TurnStatus.COMPLETE
    assert len(answer_turn.text) > TELEGRAM_LIMIT

    shown = [message for message in bot_api.bot_messages(chat)]
    assert len(shown) >= 2
    assert all(0 < len(message.text) <= TELEGRAM_LIMIT for message in shown)
    assert words(" ".join(message.text for message in shown)) == words(answer_turn.text)
    assert set(answer_turn.message_ids) == {message.message_id for message in shown}
    assert bot_api.served_429s == 0
