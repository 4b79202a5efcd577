"""An update that reaches the bot twice is handled once.

Telegram sends a webhook update again when the bot's 200 did not reach it in time (a slow network, a
proxy that gave up), with the same `update_id`. The guard here runs before every other handler and
drops an update whose id this process has already seen, so nobody is answered twice. It remembers the
latest `capacity` ids, far more than Telegram keeps retrying. It is per process and lost at a restart;
with several bot processes behind one URL, a redelivery reaching another process is recognised by
the database instead (the inbox stores each `update_id` once, `storage.inbox`). An update that could
not be stored is forgotten here again (`SeenUpdates.forget`), so that its redelivery is let through.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.runtime import current_runtime

log = logging.getLogger(__name__)

REMEMBERED_UPDATES = 10_000


class SeenUpdates:
    """The ids of the latest updates, oldest forgotten first."""

    def __init__(self, capacity: int = REMEMBERED_UPDATES) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[int, None] = OrderedDict()

    def first_time(self, update_id: int) -> bool:
        """True the first time an id is seen; False again until it is forgotten."""
        if update_id in self._ids:
            return False
        self._ids[update_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def forget(self, update_id: int) -> None:
        """Let the id through again (its update was not stored, and Telegram will send it again)."""
        self._ids.pop(update_id, None)


def make_redelivery_guard(
    seen: SeenUpdates | None = None,
) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]:
    """A TypeHandler callback for group -2 that stops a repeated update before any handler sees it."""
    seen = seen if seen is not None else SeenUpdates()

    async def drop_repeats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Let an update through the first time its id is seen, never again."""
        if seen.first_time(update.update_id):
            return
        log.info("update %s arrived again (redelivered); handled once", update.update_id)
        runtime = current_runtime(context.application)
        if runtime is not None:
            runtime.metrics.updates_redelivered.inc()
        raise ApplicationHandlerStop

    return drop_repeats
