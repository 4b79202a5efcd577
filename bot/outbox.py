"""The replies of one request: delivered now if Telegram takes them, else kept with the request in
the inbox and delivered later, in order, before the conversation's next answer.

Every reply a request's work sends goes through its `Outbox`. `Delivery` retries for as long as a
real outage lasts (DELIVERY_GIVE_UP_AFTER_S); what it still could not deliver is kept (its text,
where it goes, its buttons, the preview it belongs in, the answer turn it completes) and the inbox
tries it again every UNDELIVERED_RETRY_INTERVAL_S. Once one reply of a request is kept, the later
ones are kept behind it without trying, so they arrive in order. An answer is only recorded
COMPLETE once Telegram took it; until then its turn is UNDELIVERED, which the model never sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

from telegram import Bot

from bot.answer_keyboard import keyboard
from bot.delivery import Delivery, DeliveryOutcome, DeliveryPolicy
from bot.incoming import ReplyTarget
from storage.errors import NotFound
from storage.schema import utc_now
from storage.store import Store
from storage.types import InboxStatus, StoredRequest, StoredTurn, TurnStatus

log = logging.getLogger(__name__)

REDELIVERY_GIVE_UP_S = 20.0  # one round of trying a kept reply again


class Outbox:
    """Where one request's replies go (see the module docstring). Without a request (a reply that
    answers no stored request), what fails is only logged."""

    def __init__(
        self,
        bot: Bot,
        policy: DeliveryPolicy,
        *,
        store: Store | None = None,
        request: StoredRequest | None = None,
        retry_interval_s: float = 60.0,
    ) -> None:
        self.bot = bot
        self.policy = policy
        self.request = request
        self._store = store
        self._retry_interval = timedelta(seconds=retry_interval_s)
        self._kept: list[dict[str, Any]] = []
        # The request's stored turns when its work began (bot.request_runner reads them), so the
        # work needn't read them again before the model starts; None when not read.
        self.request_turns: list[StoredTurn] | None = None
        # The request was marked done with its work's last write (an answer's close,
        # `bot.answering.assistant_turn`): nothing is left for bot.request_runner to finish.
        self.done = False

    @property
    def request_id(self) -> int | None:
        return None if self.request is None else self.request.id

    @property
    def postponed(self) -> bool:
        """Some reply is waiting for Telegram: the request is not done until it is delivered."""
        return bool(self._kept)

    def delivery(self, target: ReplyTarget, *, min_interval_s: float = 0.0) -> Delivery:
        return Delivery(self.bot, target, min_interval_s=min_interval_s, policy=self.policy)

    async def send(self, target: ReplyTarget, text: str, markup: str | None = None) -> list[int]:
        """A short reply (an apology, a notice, usage help) in its place in the request's replies."""
        ids, _ = await self.finish(self.delivery(target), text, markup, ends_the_work=False)
        return ids

    async def finish(
        self,
        delivery: Delivery,
        text: str,
        markup: str | None = None,
        turn_id: int | None = None,
        *,
        ends_the_work: bool = True,
    ) -> tuple[list[int], bool]:
        """Make `delivery`'s messages say `text` (a keyboard named in `bot.answer_keyboard` under the
        last); the message ids, and True if Telegram took all of it."""
        if self._kept:
            self._keep(delivery, text, markup, turn_id)
            return list(delivery.message_ids), False
        try:
            ids = await delivery.deliver(text, keyboard(markup))
        except asyncio.CancelledError:  # shutdown mid-delivery: keep the rest for the next start
            if delivery.unsent_text(text).strip():
                self._keep(delivery, text, markup, turn_id)
                await asyncio.shield(self.save(work_done=ends_the_work))
            raise
        if delivery.outcome is DeliveryOutcome.LATER:
            self._keep(delivery, text, markup, turn_id)
        return ids, delivery.outcome is DeliveryOutcome.DELIVERED

    async def save(self, *, work_done: bool) -> None:
        """Write the kept replies to the request, to be tried again after the retry interval."""
        if not self._kept:
            return
        if self._store is None or self.request is None:
            log.warning("dropping %d replies Telegram did not take (no request keeps them)", len(self._kept))
            return
        retry_at = utc_now() + self._retry_interval
        await self._store.inbox.keep_replies(self.request.id, self._kept, retry_at, work_done=work_done)

    async def redeliver(self, entries: Sequence[dict[str, Any]]) -> bool:
        """Try the replies kept before, in order; True once all are delivered (or can never be)."""
        for position, entry in enumerate(entries):
            target = ReplyTarget(**entry["target"])
            delivery = Delivery(
                self.bot, target, min_interval_s=0.0, policy=self.policy.shorter(REDELIVERY_GIVE_UP_S),
                live_message_id=entry.get("preview"),
            )
            ids = await delivery.deliver(entry["text"], keyboard(entry.get("markup")))
            if delivery.outcome is DeliveryOutcome.LATER:
                self._keep(delivery, entry["text"], entry.get("markup"), entry.get("turn_id"))
                self._kept[-1]["delivered"] = [*entry.get("delivered", []), *ids]
                self._kept.extend(entries[position + 1 :])
                work_done = self.request is not None and self.request.status is InboxStatus.UNDELIVERED
                await self.save(work_done=work_done)
                return False
            if entry.get("turn_id") is not None and delivery.outcome is DeliveryOutcome.DELIVERED:
                await self._complete(entry["turn_id"], [*entry.get("delivered", []), *ids])
        log.info("delivered %d replies Telegram had not taken before", len(entries))
        return True

    def _keep(self, delivery: Delivery, text: str, markup: str | None, turn_id: int | None) -> None:
        self._kept.append({
            "text": delivery.unsent_text(text),
            "markup": markup,
            "turn_id": turn_id,
            "target": asdict(replace(delivery.target, chat_id=delivery.chat_id)),
            "preview": delivery.preview_left(),
            "delivered": list(delivery.message_ids),
        })

    async def _complete(self, turn_id: int, message_ids: list[int]) -> None:
        """The answer arrived at last: it is part of the conversation now."""
        if self._store is None:
            return
        try:
            await self._store.set_turn_status(turn_id, TurnStatus.COMPLETE)
            await self._store.link_messages(turn_id, message_ids)
        except NotFound:  # erased meanwhile (/forget, retention)
            pass
