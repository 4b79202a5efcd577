"""The stand-in's faults and restarts: outages on any method, updates kept until confirmed, files of
any type hosted as sent. What the bot's reliability tests (tests/bot/test_restarts.py,
test_outages.py, test_untrusted_files.py) rely on."""

from __future__ import annotations

import pytest
from telegram import Bot
from telegram.error import RetryAfter, TelegramError

from standin.telegram import BotApiStandIn
from tests.standin.fixtures import bot_api  # noqa: F401  (the fixture under test)
from tests.untrusted_files import EPS_PAYLOAD


@pytest.fixture
async def bot(bot_api: BotApiStandIn):  # noqa: F811
    async with Bot(bot_api.token, base_url=bot_api.base_url,
                   base_file_url=bot_api.base_file_url) as real_bot:
        yield real_bot


async def test_an_outage_fails_every_method_but_polling_until_it_ends(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(122)
    bot_api.start_outage(500, "Internal Server Error")
    for attempt in range(3):
        with pytest.raises(TelegramError):
            await bot.send_message(chat.id, f"try {attempt}")
    with pytest.raises(TelegramError):
        await bot.send_chat_action(chat.id, "typing")
    assert await bot.get_updates(timeout=0) == ()  # polling still works, as in Telegram's outages
    bot_api.end_outage()
    await bot.send_message(chat.id, "back")
    assert [m.text for m in bot_api.bot_messages(chat)] == ["back"]
    assert [e.error_code for e in bot_api.served_errors] == [500] * 4


async def test_sustained_429s_on_any_method_carry_retry_after(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(123)
    bot_api.fail_next("*", 429, "Too Many Requests: retry after 1", retry_after=1, times=2)
    with pytest.raises(RetryAfter):
        await bot.send_message(chat.id, "hi")
    assert await bot.get_updates(timeout=0) == (), "getUpdates is not rate limited here"
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("x", chat.id, 1)
    await bot.send_message(chat.id, "hi")


async def test_updates_a_stopped_poller_never_confirmed_go_to_the_next_one(bot_api: BotApiStandIn):
    """A bot killed after fetching updates gets them again when it restarts (Telegram redelivers
    until a later getUpdates offset confirms them)."""
    chat = bot_api.private_chat(124)
    for text in ("one", "two"):
        await bot_api.send_text(chat, bot_api.users[124], text)
    async with Bot(bot_api.token, base_url=bot_api.base_url) as killed:
        fetched = await killed.get_updates(timeout=0)  # and then it dies
    async with Bot(bot_api.token, base_url=bot_api.base_url) as restarted:
        again = await restarted.get_updates(timeout=0)
        assert [u.update_id for u in again] == [u.update_id for u in fetched]
        assert await restarted.get_updates(offset=again[-1].update_id + 1, timeout=0) == ()


async def test_a_file_of_any_type_is_hosted_as_sent_and_never_decoded(
        bot: Bot, bot_api: BotApiStandIn, fake_ghostscript):
    chat = bot_api.private_chat(125)
    await bot_api.send_document(chat, bot_api.users[125], EPS_PAYLOAD, "holiday.jpg", "image/jpeg")
    (update,) = await bot.get_updates(timeout=0)
    document = update.message.document
    assert (document.file_name, document.mime_type, document.thumbnail) == ("holiday.jpg", "image/jpeg", None)
    file = await bot.get_file(document.file_id)
    assert bytes(await file.download_as_bytearray()) == EPS_PAYLOAD
    assert not fake_ghostscript.was_run()
