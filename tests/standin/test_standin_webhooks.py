"""The Bot API stand-in's webhooks, driven by python-telegram-bot's real Bot and a small receiver.

If these pass, the bot's webhook tests meet Telegram's behaviour: setWebhook/deleteWebhook/getWebhookInfo,
a JSON POST per update with the secret header, redelivery until a 2xx, and getUpdates refused meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import BadRequest, Conflict

from standin.telegram import BotApiStandIn
from standin.telegram.webhooks import SECRET_HEADER
from tests.standin.fixtures import bot_api  # noqa: F401  (the fixture under test)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers each POST with the next of `statuses` (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict, str | None, str]] = []  # (update, secret header, content type)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._take)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        update = json.loads(await request.text())
        self.received.append((update, request.headers.get(SECRET_HEADER), request.content_type))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def bot(bot_api: BotApiStandIn) -> AsyncIterator[Bot]:
    async with Bot(bot_api.token, base_url=bot_api.base_url, base_file_url=bot_api.base_file_url) as real:
        yield real


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    await started.start()
    yield started
    await started.stop()


async def test_updates_are_posted_as_json_with_the_secret_and_getupdates_is_refused(bot, bot_api, receiver):
    assert await bot.set_webhook(receiver.url, secret_token="s3cret_token-1")
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.max_connections) == (receiver.url, 0, 40)
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()

    chat = bot_api.private_chat(7)
    await bot_api.send_text(chat, bot_api.user(7), "hello")
    await bot_api.wait_for(lambda: receiver.received)
    [(update, secret, content_type)] = receiver.received
    assert update["message"]["text"] == "hello" and secret == "s3cret_token-1"
    assert content_type == "application/json"
    await bot_api.wait_for(lambda: bot_api.webhook.info()["pending_update_count"] == 0)


async def test_a_refused_delivery_is_sent_again_and_reported_in_the_webhook_info(bot, bot_api, receiver):
    receiver.statuses = [500, 403]
    await bot.set_webhook(receiver.url)
    chat = bot_api.private_chat(7)
    await bot_api.send_text(chat, bot_api.user(7), "again")

    await bot_api.wait_for(lambda: len(bot_api.webhook.attempts) == 3)
    ids = {update["update_id"] for update, _, _ in receiver.received}
    assert len(ids) == 1, "the same update, three times"
    assert [a.status for a in bot_api.webhook.attempts] == [500, 403, 200]
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 403 Forbidden"
    assert info.last_error_date is not None and info.pending_update_count == 0


async def test_an_unreachable_receiver_keeps_the_update_until_deletewebhook_hands_it_to_getupdates(
    bot, bot_api, receiver
):
    await receiver.stop()  # nothing listens at its URL now
    await bot.set_webhook(receiver.url)
    chat = bot_api.private_chat(7)
    await bot_api.send_text(chat, bot_api.user(7), "still there?")
    await bot_api.wait_for(lambda: bot_api.webhook.attempts)
    assert (await bot.get_webhook_info()).last_error_message == "Connection refused"

    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""
    [update] = await bot.get_updates()
    assert update.message.text == "still there?"


async def test_a_lost_answer_makes_the_update_arrive_twice(bot, bot_api, receiver):
    bot_api.webhook.lose_responses = 1  # the 200 "never reached Telegram"
    await bot.set_webhook(receiver.url)
    await bot_api.send_text(bot_api.private_chat(7), bot_api.user(7), "once")
    await bot_api.wait_for(lambda: len(bot_api.webhook.attempts) == 2)
    first, second = (update for update, _, _ in receiver.received)
    assert first == second


async def test_a_secret_with_characters_telegram_refuses_is_a_bad_request(bot):
    with pytest.raises(BadRequest, match="(?i)secret token"):
        await bot.set_webhook("http://127.0.0.1:9/hook", secret_token="no spaces allowed")
