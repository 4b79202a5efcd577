"""Webhook delivery the way Telegram does it: setWebhook, deleteWebhook, getWebhookInfo, a POST per update.

While a webhook is set, each pending update is POSTed to its URL as a JSON-serialized Update
(`Content-Type: application/json`), with the `X-Telegram-Bot-Api-Secret-Token` header when setWebhook
was given a `secret_token`. An update is confirmed, and gone, only when the receiver answers 2xx within
`timeout_s`; any other status, a refused connection or a timeout becomes the webhook's last error (as
getWebhookInfo reports it: `last_error_date`, `last_error_message`) and the same update is sent again
after a pause that grows, so a receiver must be ready to see an update twice. While a webhook is set,
getUpdates is refused with 409, as Telegram does; deleteWebhook returns to getUpdates (pending updates
kept unless `drop_pending_updates`). Updates go out one at a time, oldest first (Telegram may use up to
`max_connections` at once and promises no order across them).

Like a self-hosted telegram-bot-api server started with --local, it accepts http URLs on any port (it
delivers on loopback); Telegram's cloud server insists on https and ports 443, 80, 88 and 8443.

Tests make it lose answers through `lose_responses`: the receiver's 2xx arrives, but the stand-in acts
as if it had timed out, which is how Telegram comes to send an update the bot already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .state import UpdateQueue
from .wire import ApiError, bad_request

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_ACTIVE = ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                               "deleteWebhook to delete the webhook first")
DEFAULT_MAX_CONNECTIONS = 40


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of an update: what was sent, and what came of it."""

    update_id: int
    url: str
    secret_token: str | None  # the header's value, None when not sent
    status: int | None  # the receiver's HTTP status; None when none arrived
    error: str | None  # as getWebhookInfo would report it; None when delivered
    time: float


class WebhookDelivery:
    """The webhook of one stand-in: its settings, the delivery task, and every attempt made."""

    def __init__(self, updates: UpdateQueue, *, timeout_s: float = 10.0, first_retry_s: float = 0.1,
                 max_retry_s: float = 2.0) -> None:
        self.updates = updates
        self.timeout_s = timeout_s
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self.url = ""
        self.secret_token: str | None = None
        self.max_connections = DEFAULT_MAX_CONNECTIONS
        self.ip_address: str | None = None
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self.attempts: list[WebhookAttempt] = []
        self.lose_responses = 0  # the next N 2xx answers are treated as timed out (see module doc)
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def active(self) -> bool:
        return bool(self.url)

    async def set(self, params: dict[str, Any]) -> bool:
        """setWebhook; an empty url removes the webhook, as Telegram does."""
        url = str(params.get("url") or "")
        if not url:
            return await self.delete(bool(params.get("drop_pending_updates")))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
        secret = params.get("secret_token")
        if secret is not None and not SECRET_TOKEN.fullmatch(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self.updates.drop_pending()
        if "allowed_updates" in params:  # not given: the previous setting stays
            self.updates.allowed_updates = list(params["allowed_updates"] or [])
        self.url, self.secret_token = url, (str(secret) if secret is not None else None)
        connections = int(params.get("max_connections") or DEFAULT_MAX_CONNECTIONS)
        self.max_connections = max(1, min(100, connections))
        self.ip_address = params.get("ip_address")
        self.last_error_date = self.last_error_message = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver_while_set(), name="standin-webhook")
        self.updates.wake()
        return True

    async def delete(self, drop_pending_updates: bool = False) -> bool:
        """deleteWebhook: stop delivering; getUpdates works again."""
        self.url, self.secret_token = "", None
        if drop_pending_updates:
            self.updates.drop_pending()
        await self._stop_task()
        return True

    def info(self) -> dict[str, Any]:
        """getWebhookInfo's WebhookInfo."""
        info: dict[str, Any] = {"url": self.url, "has_custom_certificate": False,
                                "pending_update_count": len(self.updates.selectable())}
        if self.active:
            info["max_connections"] = self.max_connections
            if self.ip_address:
                info["ip_address"] = self.ip_address
            if self.updates.allowed_updates:
                info["allowed_updates"] = list(self.updates.allowed_updates)
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        return info

    def deliveries_of(self, update_id: int) -> list[WebhookAttempt]:
        return [attempt for attempt in self.attempts if attempt.update_id == update_id]

    async def close(self) -> None:
        self.url = ""  # the loop ends by itself even if a cancel is lost in a finishing wait_for
        await self._stop_task()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- delivering ------------------------------------------------------------------------

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_while_set(self) -> None:
        retry_s = self.first_retry_s
        while self.active:
            pending = self.updates.selectable()
            if not pending:
                await self.updates.changed(timeout=1.0)
                continue
            update = pending[0]
            if await self._post(update):
                self.updates.confirm(update["update_id"])
                retry_s = self.first_retry_s
            else:
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, self.max_retry_s)

    async def _post(self, update: dict[str, Any]) -> bool:
        """One attempt; True when the receiver took the update."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json"}
        if self.secret_token is not None:
            headers[SECRET_HEADER] = self.secret_token
        status, error = None, None
        try:
            async with self._session.post(self.url, json=update, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as response:
                status = response.status
                await response.read()
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status} {response.reason}"
        except asyncio.TimeoutError:
            error = "Read timeout expired"
        except aiohttp.ClientConnectorError:
            error = "Connection refused"
        except aiohttp.ClientConnectionError as failure:  # the connection died mid-answer
            error = f"Connection closed: {failure}"
        if error is None and self.lose_responses > 0:
            self.lose_responses -= 1
            error = "Read timeout expired"
        self.attempts.append(WebhookAttempt(update["update_id"], self.url, headers.get(SECRET_HEADER),
                                            status, error, time.time()))
        if error is not None:
            self.last_error_date, self.last_error_message = int(time.time()), error
        return error is None
