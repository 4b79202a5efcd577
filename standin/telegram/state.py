"""What the stand-in remembers: users, chats, messages, the update queue, and what the bot did.

Tests read these records to see what the bot did; the method handlers write them. Message ids are
counted per chat and shared by users and the bot, as in Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .wire import ApiError

CONFLICT = ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only "
                         "one bot instance is running")


@dataclass
class UserHandle:
    """A Telegram user the test plays."""

    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False
    language_code: str | None = "en"

    def wire(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code and not self.is_bot:
            user["language_code"] = self.language_code
        return user


@dataclass
class ChatHandle:
    """A chat the bot is in: private (id = the user's id) or a supergroup (maybe a forum).

    Set `blocked` on a private chat to answer the bot 403 "bot was blocked by the user". With
    `privacy_mode` a group delivers only what Telegram shows such bots: commands, replies to the
    bot and messages mentioning it; without it (the default) the bot sees every message. A basic
    group upgraded to a supergroup has `migrated_to` set: writes to it are refused with that id."""

    id: int
    type: str
    title: str | None = None
    first_name: str | None = None
    username: str | None = None
    is_forum: bool = False
    blocked: bool = False
    privacy_mode: bool = False
    migrated_to: int | None = None
    topics: dict[int, str] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        for name in ("title", "first_name", "username"):
            if getattr(self, name):
                chat[name] = getattr(self, name)
        if self.is_forum:
            chat["is_forum"] = True
        return chat


@dataclass
class ApiCall:
    """One request the bot made, with its typed parameters and the status it was answered."""

    method: str
    params: dict[str, Any]
    time: float
    status: int = 200


@dataclass
class ServedError:
    """An error answer the stand-in gave; `injected` if it came from fail_next."""

    method: str
    error_code: int
    description: str
    retry_after: int | None = None
    chat_id: int | str | None = None
    injected: bool = False


@dataclass
class DraftRecord:
    """One sendMessageDraft call that succeeded."""

    chat_id: int
    draft_id: int
    text: str
    message_thread_id: int | None
    time: float


@dataclass
class BotMessage:
    """A message the bot sent, as it is now; `history` holds every text it had, first to last."""

    chat_id: int
    message_id: int
    text: str
    kind: str
    wire: dict[str, Any]
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def edits(self) -> list[str]:
        return self.history[1:]

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        """(text, callback_data) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [(button["text"], button.get("callback_data")) for row in rows for button in row]


class MessageStore:
    """Every message in every chat, in its wire form, plus the bot's messages as records."""

    def __init__(self) -> None:
        self.wire: dict[tuple[int, int], dict[str, Any]] = {}
        self.bot: dict[tuple[int, int], BotMessage] = {}
        self._counters: dict[int, itertools.count] = defaultdict(lambda: itertools.count(1))

    def next_id(self, chat_id: int) -> int:
        return next(self._counters[chat_id])

    def add(self, message: dict[str, Any]) -> dict[str, Any]:
        self.wire[(message["chat"]["id"], message["message_id"])] = message
        return message

    def get(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        return self.wire.get((chat_id, message_id))

    def as_reply(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The message as embedded in reply_to_message: without its own reply_to_message."""
        message = self.wire[(chat_id, message_id)]
        return {key: value for key, value in message.items() if key != "reply_to_message"}


class UpdateQueue:
    """Pending updates and long polling with offset confirmation, like getUpdates."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.allowed_updates: list[str] = []
        self.handed_out: set[int] = set()  # update_ids some getUpdates answered with (what tests wait on)
        self._update_ids = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._closed = False

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), kind: payload}
        self.pending.append(update)
        self.wake()
        return update

    def wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def close(self) -> None:
        self._closed = True
        self.wake()

    def drop_pending(self) -> None:
        self.pending.clear()

    async def poll(self, offset: int, limit: int, timeout: float,
                   allowed_updates: list[str] | None) -> list[dict[str, Any]]:
        if not 1 <= limit <= 100:
            limit = 100
        if allowed_updates is not None:
            self.allowed_updates = list(allowed_updates)
        self._poll_generation += 1
        generation = self._poll_generation
        self.wake()  # a waiting older poll learns that it was superseded
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ready = self._confirm_and_select(offset, limit)
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._closed:
                self.handed_out.update(update["update_id"] for update in ready)
                return ready
            wakeup = self._wakeup
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            if generation != self._poll_generation:
                raise CONFLICT

    def _confirm_and_select(self, offset: int, limit: int) -> list[dict[str, Any]]:
        if offset < 0:
            self.pending = self.pending[offset:]
        elif offset:
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        return self.selectable()[:limit]

    def selectable(self) -> list[dict[str, Any]]:
        """The pending updates the bot gets next (kinds it did not ask for are dropped, as Telegram does)."""
        if self.allowed_updates:
            self.pending = [u for u in self.pending if self._kind(u) in self.allowed_updates]
        return list(self.pending)

    def confirm(self, update_id: int) -> None:
        """One update was received (by a webhook): it is not sent again."""
        self.pending = [u for u in self.pending if u["update_id"] != update_id]

    async def changed(self, timeout: float) -> None:
        """Wait until an update is pushed (or anything else wakes the queue), at most `timeout` s."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    @staticmethod
    def _kind(update: dict[str, Any]) -> str:
        return next(key for key in update if key != "update_id")

