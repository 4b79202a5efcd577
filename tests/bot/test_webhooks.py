"""Webhook mode end to end: the real bot behind PTB's webhook server, the stand-in posting updates to it
the way Telegram does (setWebhook at start, a JSON POST per update with the secret, redelivery)."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import pytest
from sqlalchemy import select

from bot import texts
from standin.telegram.webhooks import SECRET_HEADER
from storage.database import create_engine
from storage.schema import InboxItem
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, free_port, image_bytes, runtime
from tests.bot.test_database_unavailable import write_lock_held

USER_ID = 1001


def webhook_settings(**overrides: object) -> dict[str, object]:
    port = free_port()
    return {"telegram_webhook_url": f"http://127.0.0.1:{port}/telegram/updates", "webhook_port": port,
            **overrides}


async def post_update(url: str, update: dict, secret: str | None) -> int:
    """POST an update the way someone who only knows the URL (and maybe guesses a secret) would."""
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=update, headers=headers) as response:
            return response.status


async def test_a_photo_is_answered_through_webhooks_with_a_secret_kept_out_of_the_logs(
    bot_api, start_bot, caplog
):
    caplog.set_level(logging.DEBUG)  # PTB logs setWebhook's parameters at DEBUG
    settings = webhook_settings()
    application = await start_bot(**settings)
    hook = bot_api.webhook
    assert hook.url == settings["telegram_webhook_url"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", hook.secret_token or ""), "a random secret was set"

    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")
    [answer] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)

    assert bot_api.drafts(chat), "the answer still grows while it is written"
    assert not bot_api.calls_to("getUpdates"), "nothing was polled"
    assert hook.attempts
    assert all(a.status == 200 and a.secret_token == hook.secret_token for a in hook.attempts)
    store = runtime(application).store
    turns = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert [t.status for t in turns] == [TurnStatus.COMPLETE, TurnStatus.COMPLETE]
    assert answer.text == (turns[-1].text.strip() or texts.EMPTY_ANSWER)
    assert hook.secret_token not in caplog.text


async def test_updates_without_the_right_secret_are_refused_and_never_answered(bot_api, start_bot):
    settings = webhook_settings(webhook_secret="the-right-secret_123")
    await start_bot(**settings)
    assert bot_api.webhook.secret_token == "the-right-secret_123"
    intruder = bot_api.private_chat(666, "Mallory")
    message = {**bot_api.new_message(intruder, bot_api.user(666)), "text": "hi"}
    forged = {"update_id": 900001, "message": message}

    url = settings["telegram_webhook_url"]
    assert await post_update(url, forged, "a-guess") == 403
    assert await post_update(url, forged, None) == 403
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "hello")
    await bot_api.wait_for_bot_message(chat)
    await bot_api.wait_quiet(quiet=0.3)
    assert bot_api.bot_messages(intruder) == [], "a forged update reached no handler"


async def test_an_update_telegram_sends_again_is_answered_once(bot_api, start_bot):
    bot_api.webhook.lose_responses = 1  # the bot's 200 "never reached Telegram": the update comes twice
    application = await start_bot(**webhook_settings())
    chat = bot_api.private_chat(USER_ID)
    sent = await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("blue"), caption="once, please")

    await bot_api.wait_for(lambda: len(bot_api.webhook.attempts) >= 2)
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    await bot_api.wait_quiet(quiet=0.5)

    [update_id] = {a.update_id for a in bot_api.webhook.attempts}
    assert len(bot_api.webhook.deliveries_of(update_id)) == 2
    assert len(bot_api.bot_messages(chat)) == 1, "one answer"
    store = runtime(application).store
    turns = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert [t.role for t in turns] == ["user", "assistant"] and turns[0].text == "once, please"
    assert sent["message_id"] in turns[0].message_ids
    metrics = runtime(application).metrics.registry
    assert metrics.get_sample_value("idefics_updates_redelivered_total") == 1


@pytest.mark.parametrize("first", ["webhook", "polling"])
async def test_the_bot_switches_between_webhook_and_polling_across_restarts(bot_api, start_bot, first):
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    modes = {"webhook": webhook_settings(), "polling": {}}
    second = "polling" if first == "webhook" else "webhook"
    for count, mode in enumerate((first, second), start=1):
        application = await start_bot(**modes[mode])
        assert bot_api.webhook.active is (mode == "webhook")
        await bot_api.send_text(chat, user, f"message {count}")
        await bot_api.wait_for_bot_message(chat, count=count)
        await answers_settled(application)
        await start_bot.stop(application)


async def stored_update_ids(database_url: str) -> set[int]:
    """The update ids in the inbox, read by another connection (as another process would)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return set((await connection.scalars(select(InboxItem.update_id))).all())
    finally:
        await engine.dispose()


async def test_the_webhook_confirms_an_update_only_once_it_is_stored(bot_api, start_bot, database_url):
    settings = webhook_settings(webhook_secret="stored-first")
    await start_bot(**settings)
    chat = bot_api.private_chat(USER_ID)
    message = {**bot_api.new_message(chat, bot_api.user(USER_ID)), "text": "keep this one"}
    with write_lock_held(database_url):  # the inbox's write waits for the lock (DATABASE_LOCK_TIMEOUT_S 10)
        posting = asyncio.ensure_future(
            post_update(settings["telegram_webhook_url"], {"update_id": 900002, "message": message},
                        "stored-first")
        )
        await asyncio.sleep(1.0)
        assert not posting.done(), "no 200 while the update is not stored yet"
    assert await asyncio.wait_for(posting, 15) == 200
    assert 900002 in await stored_update_ids(database_url), "stored before the 200"
    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.text


async def test_an_update_that_cannot_be_stored_is_refused_and_answered_when_telegram_sends_it_again(
    bot_api, start_bot, database_url
):
    application = await start_bot(**webhook_settings(database_lock_timeout_s=0.3, inbox_lease_s=1.5))
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    with write_lock_held(database_url):
        await bot_api.send_text(chat, user, "are you there?")
        [notice] = await bot_api.wait_for_bot_message(chat)
        await bot_api.wait_for(lambda: len(bot_api.webhook.attempts) >= 2)
    assert notice.text == texts.CANNOT_SAVE_KEPT
    assert runtime(application).inbox.unsaved_count == 0, "Telegram keeps it, not the bot's memory"

    _, answer = await bot_api.wait_for_bot_message(chat, count=2, timeout=30)
    await answers_settled(application)
    await bot_api.wait_quiet(quiet=0.5)
    statuses = [attempt.status for attempt in bot_api.webhook.attempts]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {503}, statuses
    assert len(bot_api.bot_messages(chat)) == 2, "told once, answered once"
    store = runtime(application).store
    question, reply = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert (question.text, reply.status, reply.message_ids) == ("are you there?", TurnStatus.COMPLETE,
                                                                (answer.message_id,))
