"""The inbox, bot side: every request is stored before its update is acknowledged, then worked on in
its conversation's turn, in this process or in any other one on the same database.

- `accept`: a handler's request (`bot.incoming`) is written to the inbox (`storage.inbox`) the moment
  its update is handled. Its work is queued in the conversation at once, before the first await
  (that fixes the order), and starts once the row is written. If the database can't take it, the
  person is told so, and the request is held in memory (at most MAX_UNSAVED_MESSAGES) until the
  database is back; later requests of that conversation wait behind it. By webhook it is refused
  instead (`bot.webhook_receipts`: Telegram keeps it and sends it again, maybe to another process);
  the person is told once. An update stored before (Telegram sent it again, maybe to another
  process) is recognised by its `update_id` and not stored twice.
- A queued job claims the conversation (a lease in the database), works on its oldest waiting
  request (`bot.request_runner`), and gives the claim back once nothing more is queued here for it.
- `sweep` (a JobQueue job): the heartbeat that renews this process's claims, the retry that stores
  requests held in memory, and the start of work on every conversation with a request ready and no
  live holder: what a restart or a crash left, and replies kept for later whose time has come.

Telegram is only told an update was received (the next getUpdates offset, or the webhook's 200) once
its handler has finished (`bot.telegram_client`, `bot.webhook_receipts`), so a request is stored (or
held, and its sender told) before that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from datetime import timedelta

from telegram import Bot, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.conversation_queue import ConversationKey
from bot.delivery import send_reply
from bot.incoming import AlbumItem, ReplyTarget, TaskCall
from bot.request_codec import Request, encode, kind_of
from bot.request_runner import Work, is_ready, run_request
from bot.runtime import BotRuntime, runtime_of
from bot.webhook_receipts import WebhookReceipts
from storage.errors import DatabaseUnavailable, StorageError
from storage.schema import utc_now
from storage.types import NewRequest

log = logging.getLogger(__name__)

DONE_REQUESTS_KEPT = timedelta(days=1)  # Telegram redelivers unconfirmed updates for about a day
PURGE_EVERY_S = 3600.0


class Inbox:
    """Storing requests and starting their work (see the module docstring)."""

    def __init__(
        self,
        runtime: BotRuntime,
        bot: Bot,
        work: Mapping[str, Work],
        *,
        receipts: WebhookReceipts | None = None,
    ) -> None:
        self._runtime = runtime
        self._bot = bot
        self._receipts = receipts  # by webhook: what could not be stored is refused, not held
        self._work = dict(work)  # what to do for each kind of request (the table is bot.app's)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._lease = timedelta(seconds=runtime.settings.inbox_lease_s)
        self._writes: dict[ConversationKey, set[asyncio.Future[None]]] = {}
        self._unsaved: list[NewRequest] = []  # the database could not take them yet
        self._fresh: set[ConversationKey] = set()  # a new request came: try kept replies now
        self._told: set[int] = set()  # requests whose sender heard the database is unavailable
        self._told_refused: set[int] = set()  # updates refused (webhook) whose sender was told
        self._purged_at = float("-inf")

    @property
    def sweep_interval_s(self) -> float:
        settings = self._runtime.settings
        return min(settings.inbox_lease_s / 3, settings.undelivered_retry_interval_s)

    @property
    def unsaved_count(self) -> int:
        return len(self._unsaved)

    async def accept(
        self, update: Update, key: ConversationKey, request: Request, *, new_conversation: bool = False
    ) -> None:
        """Store `request` and queue its work behind the conversation's earlier requests."""
        message = update.effective_message
        new = NewRequest(
            update_id=update.update_id,
            chat_id=key.chat_id,
            user_id=key.user_id,
            kind=kind_of(request, new_conversation=new_conversation),
            payload=encode(request),
            received_at=utc_now(),
            media_group_id=message.media_group_id if isinstance(request, AlbumItem) and message else None,
        )
        write = asyncio.ensure_future(self._store(new, _answered_in(request)))
        writes = self._writes.setdefault(key, set())
        writes.add(write)
        write.add_done_callback(writes.discard)
        self._fresh.add(key)
        self.kick(key)
        await write

    def kick(self, key: ConversationKey) -> None:
        """Make sure a job will look at the conversation's oldest waiting request."""
        answers = self._runtime.answers
        if answers.closed or answers.has_waiting(key):
            return  # shutting down (the request waits for the next start), or a job will look anyway
        answers.submit(key, lambda: self._work_on(key), name="request")

    async def writes_done(self, key: ConversationKey) -> None:
        """Wait until the requests this process accepted for the conversation are written."""
        pending = list(self._writes.get(key, ()))
        if pending:
            await asyncio.wait(pending)

    async def sweep(self, context: ContextTypes.DEFAULT_TYPE | None = None) -> None:
        """JobQueue job: heartbeat, held requests stored, ready conversations started."""
        try:
            inbox = self._runtime.store.inbox  # raises too while the store is stopped
            await inbox.renew_claims(self.holder, self._lease)
            await self._store_unsaved()
            for chat_id, user_id in await inbox.ready_conversations(self.holder):
                key = ConversationKey(chat_id, user_id)
                if not self._runtime.answers.has_jobs(key):
                    self.kick(key)
            if time.monotonic() - self._purged_at > PURGE_EVERY_S:
                self._purged_at = time.monotonic()
                await inbox.purge_done(DONE_REQUESTS_KEPT)
        except StorageError as error:
            log.warning("the inbox can't reach the database (%s); trying again soon", error)

    async def close(self) -> None:
        """Give back this process's claims, so that a restart takes its conversations over at once."""
        if self._unsaved:
            log.error("%d messages could not be stored before shutdown (the database was unavailable)",
                      len(self._unsaved))
        try:
            await self._runtime.store.inbox.release(self.holder)
        except StorageError as error:
            log.warning("could not give back the inbox's claims (%s); they run out by themselves", error)

    def forget_user(self, user_id: int) -> None:
        """Drop held requests of a user whose data is being erased."""
        self._unsaved = [request for request in self._unsaved if request.user_id != user_id]

    # ---- storing ---------------------------------------------------------------------------

    async def _store(self, new: NewRequest, target: ReplyTarget) -> None:
        try:
            if await self._runtime.store.inbox.add(new) is None:
                log.info("update %s was stored before (sent again); handled once", new.update_id)
                self._runtime.metrics.updates_redelivered.inc()
            return
        except DatabaseUnavailable as error:
            log.warning("could not store a request from chat %s: %s", new.chat_id, error)
        if self._receipts is not None:
            self._receipts.refuse(new.update_id)
            if new.update_id in self._told_refused:
                return
            self._told_refused.add(new.update_id)
            text = texts.CANNOT_SAVE_KEPT
        elif len(self._unsaved) < self._runtime.settings.max_unsaved_messages:
            self._unsaved.append(new)
            text = texts.CANNOT_SAVE_KEPT
        else:
            text = texts.CANNOT_SAVE_FULL
        await send_reply(self._bot, target, text, policy=self._runtime.delivery_policy)

    async def _store_unsaved(self) -> None:
        """Store the held requests, oldest first (stops at the first the database refuses)."""
        while self._unsaved:
            held = self._unsaved[0]
            await self._runtime.store.inbox.add(held)
            self._unsaved.pop(0)
            log.info("stored a request from chat %s that had to wait for the database", held.chat_id)
            self.kick(ConversationKey(held.chat_id, held.user_id))

    # ---- working ---------------------------------------------------------------------------

    async def _work_on(self, key: ConversationKey) -> None:
        """One job: claim the conversation, work on its oldest waiting request, let go."""
        fresh = key in self._fresh
        self._fresh.discard(key)
        await self.writes_done(key)
        if any((held.chat_id, held.user_id) == (key.chat_id, key.user_id) for held in self._unsaved):
            return  # an earlier message is not stored yet: it goes first, once it is
        try:
            inbox = self._runtime.store.inbox
            claimed, request, turns = await inbox.claim_oldest(key.chat_id, key.user_id, self.holder, self._lease)
            if not claimed:
                return  # another process holds it and will get to it
            progressed = False
            try:
                if request is not None and (fresh or is_ready(request)):
                    progressed = await run_request(
                        self._runtime, self._bot, request, self._work, first_to_tell=self._first_to_tell,
                        turns=turns,
                    )
            finally:
                await self._let_go(key, look_again=progressed)
        except StorageError as error:  # unavailable (or closed under us): the sweep tries again
            log.warning("conversation %s waits for the database: %s", key, error)

    async def _let_go(self, key: ConversationKey, *, look_again: bool) -> None:
        """Give the claim back unless more work is queued here; then look for work that came meanwhile."""
        if self._runtime.answers.has_waiting(key):
            return
        waiting = await self._runtime.store.inbox.release_one(self.holder, key.chat_id, key.user_id)
        if look_again and waiting is not None and is_ready(waiting):
            self.kick(key)

    def _first_to_tell(self, request_id: int) -> bool:
        """True the first time for a request: its sender is told once that nothing can be saved."""
        if request_id in self._told:
            return False
        self._told.add(request_id)
        return True


def _answered_in(request: Request) -> ReplyTarget:
    return request.reply if isinstance(request, TaskCall) else request.target


async def sweep_inbox(context: ContextTypes.DEFAULT_TYPE) -> None:
    """JobQueue callback for `Inbox.sweep`."""
    await runtime_of(context).inbox.sweep()
