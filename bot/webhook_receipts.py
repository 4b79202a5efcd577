"""Webhook mode: Telegram hears "received" (the 200) only once the update has been handled, so an
update whose 200 was sent is stored, and one that could not be stored is sent again.

python-telegram-bot's webhook handler answers 200 as soon as it has put the update in the
application's queue, before any handler ran: a process that dies then (or a database that refuses
the write) would lose an update Telegram counts as delivered. Here the queue's `put`, which that
handler awaits, waits until the application has handled this very update (`ReceiptProcessor`, PTB's
documented hook around each update's processing, says when). An update the inbox could not store is
refused: the handler answers 503, and Telegram delivers it again later, perhaps to another bot
process behind the same URL that can reach the database. The polling path is untouched (there
`bot.telegram_client.AcknowledgementGate` holds back the next getUpdates instead).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import tornado.web
from telegram import Update
from telegram.ext import Application, SimpleUpdateProcessor

log = logging.getLogger(__name__)

RECEIPTS_KEY = "idefics_webhook_receipts"
# Telegram gives up on a webhook call after about a minute; a handler still busy then is stuck on
# something else (flood waits), and Telegram would only send the update again.
HANDLING_WAIT_S = 50.0


class WebhookReceipts:
    """Which updates the webhook handler is waiting on, and which of them could not be stored."""

    def __init__(self, on_refused: Callable[[int], None] | None = None) -> None:
        self._waiting: dict[int, asyncio.Future[None]] = {}  # by id() of the Update object
        self._refused: set[int] = set()  # update ids
        self._on_refused = on_refused

    def refuse(self, update_id: int) -> None:
        """The update was not stored: its webhook call is answered 503 and Telegram sends it again."""
        self._refused.add(update_id)
        if self._on_refused is not None:
            self._on_refused(update_id)

    def handled(self, update: object) -> None:
        waiting = self._waiting.get(id(update))
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def until_handled(self, update: Update, put: Callable[[], Awaitable[None]]) -> None:
        """Queue the update with `put`, then wait for its handling; HTTP 503 if it was refused."""
        handled = asyncio.get_running_loop().create_future()
        self._waiting[id(update)] = handled
        try:
            await put()
            await asyncio.wait_for(handled, HANDLING_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("update %s is still being handled after %.0f s; confirming it to Telegram anyway",
                        update.update_id, HANDLING_WAIT_S)
        finally:
            del self._waiting[id(update)]
        if update.update_id in self._refused:
            self._refused.discard(update.update_id)
            raise tornado.web.HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, reason="Update not stored")


class ReceiptQueue(asyncio.Queue):
    """The application's update queue: a webhook update's `put` returns once it was handled."""

    def __init__(self, receipts: WebhookReceipts) -> None:
        super().__init__()
        self._receipts = receipts

    async def put(self, item: Any) -> None:
        if not isinstance(item, Update):  # PTB's own stop signal
            await super().put(item)
            return
        await self._receipts.until_handled(item, lambda: super(ReceiptQueue, self).put(item))


class ReceiptProcessor(SimpleUpdateProcessor):
    """PTB's concurrent update processor, telling the receipts when each update's handlers are done."""

    def __init__(self, max_concurrent_updates: int, receipts: WebhookReceipts) -> None:
        super().__init__(max_concurrent_updates)
        self._receipts = receipts

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await coroutine
        finally:
            self._receipts.handled(update)


def install_receipts(application: Application, receipts: WebhookReceipts | None) -> None:
    application.bot_data[RECEIPTS_KEY] = receipts


def receipts_of(application: Application) -> WebhookReceipts | None:
    """The receipts of an application that takes updates by webhook; None when it polls."""
    return application.bot_data.get(RECEIPTS_KEY)
