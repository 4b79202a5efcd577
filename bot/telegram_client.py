"""The bot's Bot API client: PTB's ExtBot, made to survive Bot API servers that differ from Telegram's.

Two things would otherwise stop the whole bot, not just one answer:

- An update python-telegram-bot cannot read (a field this version requires that the server left out,
  e.g. a poll written in an older API's shape) fails the whole getUpdates batch, and the updater
  fetches the same batch again forever. Here such an update is replaced by an empty one with the
  same `update_id`, so polling moves past it; a warning names what was skipped.
- A server without deleteWebhook (which `run_polling` calls before polling starts) answers 404, which
  PTB reports as a rejected token. The token was already proven good by getMe, so polling goes on.

Every Bot API call passes `_post`, so that is also where each failed call is reported (`on_api_error`,
the bot's metrics), whoever made it.

And one thing PTB does not do: Telegram takes an update as received once a getUpdates call asks for
later ones, and PTB's updater asks as soon as it has queued a batch, before any handler ran. Here a
getUpdates that would confirm updates first waits (`AcknowledgementGate`) until the handlers of all
the updates fetched so far have finished, and so have stored their requests in the inbox: an update
is never confirmed before its request is stored (or held, and its sender told).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.error import EndPointNotFound, InvalidToken, TelegramError
from telegram.ext import ExtBot

log = logging.getLogger(__name__)

ApiErrorListener = Callable[[str, TelegramError], None]  # (Bot API method, the error)

# A handler this slow is stuck on something else (Telegram's flood waits): polling goes on without it.
ACKNOWLEDGEMENT_WAIT_S = 60.0


class AcknowledgementGate:
    """Waits until every update taken from Telegram so far has been handled (PTB's update queue
    counts an update as done once its handler returned)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] | None = None

    def attach(self, update_queue: asyncio.Queue[object]) -> None:
        self._queue = update_queue

    async def wait(self) -> None:
        if self._queue is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), ACKNOWLEDGEMENT_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("updates are still being handled after %.0f s; confirming them to Telegram anyway",
                        ACKNOWLEDGEMENT_WAIT_S)


class LenientBot(ExtBot):
    """ExtBot that skips unreadable updates, tolerates a missing deleteWebhook, and confirms updates
    only once they were handled (see module doc)."""

    def __init__(
        self,
        *args: Any,
        acknowledgement_gate: AcknowledgementGate | None = None,
        on_api_error: ApiErrorListener | None = None,
        **kwargs: Any,
    ) -> None:
        # Set first: PTB freezes the bot at the end of its __init__.
        self._acknowledgement_gate = acknowledgement_gate
        self._on_api_error = on_api_error
        super().__init__(*args, **kwargs)

    async def _post(self, endpoint: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if endpoint == "getUpdates" and self._acknowledgement_gate is not None and (data or {}).get("offset"):
            await self._acknowledgement_gate.wait()
        try:
            result = await super()._post(endpoint, data, **kwargs)
        except TelegramError as error:
            if self._on_api_error is not None:
                self._on_api_error(endpoint, error)
            raise
        if endpoint == "getUpdates" and isinstance(result, list):
            return [self._readable(raw) for raw in result]
        return result

    def _readable(self, raw: Any) -> Any:
        """The update itself if PTB can read it, else an empty update that only moves polling on."""
        try:
            Update.de_json(raw, self)
        except Exception as error:  # noqa: BLE001 - any parsing failure would stall polling for good
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            kinds = sorted(set(raw) - {"update_id"}) if isinstance(raw, dict) else []
            log.warning("skipped update %s (%s) that this bot cannot read: %r", update_id, kinds, error)
            return {"update_id": update_id}
        return raw

    async def delete_webhook(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return await super().delete_webhook(*args, **kwargs)
        except (EndPointNotFound, InvalidToken) as error:  # getMe already accepted the token
            if not self._bot_user:
                raise
            log.warning("the Bot API server has no deleteWebhook (%s); polling anyway", error)
            return True
