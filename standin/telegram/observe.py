"""What tests read back: the bot's messages, drafts, calls, errors, and waiting for them.

The bot runs concurrently in the same event loop, so every check that depends on the bot having done
something goes through wait_for, which polls the stand-in's records until they satisfy the test.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable

from .state import ApiCall, BotMessage, ChatHandle

if TYPE_CHECKING:
    from .server import BotApiStandIn

POLL_SECONDS = 0.01


class StandInTimeout(AssertionError):
    """A wait_for that ran out of time; the message lists the bot's latest calls."""


def _chat_id(chat: ChatHandle | int) -> int:
    return chat.id if isinstance(chat, ChatHandle) else int(chat)


class Observations:
    """Mixed into BotApiStandIn: reading and waiting for what the bot did."""

    def calls_to(self: BotApiStandIn, method: str) -> list[ApiCall]:
        """Recorded calls of one method (any letter case), oldest first."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def bot_messages(self: BotApiStandIn, chat: ChatHandle | int, thread_id: int | None = None,
                     *, include_deleted: bool = False) -> list[BotMessage]:
        """The bot's messages in a chat (optionally one forum topic), oldest first."""
        chat_id = _chat_id(chat)
        records = sorted((r for (c, _), r in self.store.bot.items() if c == chat_id),
                         key=lambda r: r.message_id)
        return [r for r in records
                if (include_deleted or not r.deleted)
                and (thread_id is None or r.message_thread_id == thread_id)]

    def drafts(self: BotApiStandIn, chat: ChatHandle | int) -> list[str]:
        """Texts of the drafts streamed to a private chat, in order."""
        return [d.text for d in self.draft_records if d.chat_id == _chat_id(chat)]

    def chat_actions(self: BotApiStandIn, chat: ChatHandle | int) -> list[str]:
        return [action for chat_id, action in self.chat_action_records
                if chat_id == _chat_id(chat)]

    def my_commands(self: BotApiStandIn, scope_type: str = "default",
                    language_code: str = "") -> list[dict[str, str]]:
        return self.commands.get((scope_type, language_code), [])

    async def wait_for(self: BotApiStandIn, predicate: Callable[[], Any],
                       timeout: float = 30) -> Any:
        """Waits until predicate() is truthy and returns its value; StandInTimeout otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise StandInTimeout(f"condition not met within {timeout} s; "
                                     f"latest calls: {self._recent_calls()}; "
                                     f"stand-in failures: {self.internal_errors}")
            await asyncio.sleep(POLL_SECONDS)

    async def wait_for_bot_message(self: BotApiStandIn, chat: ChatHandle | int, *,
                                   count: int = 1, timeout: float = 30,
                                   predicate: Callable[[BotMessage], bool] | None = None
                                   ) -> list[BotMessage]:
        """Waits until the chat holds at least `count` bot messages matching `predicate`;
        returns all matching messages, oldest first."""
        def matching() -> list[BotMessage] | None:
            found = [m for m in self.bot_messages(chat) if predicate is None or predicate(m)]
            return found if len(found) >= count else None
        return await self.wait_for(matching, timeout)

    async def wait_quiet(self: BotApiStandIn, quiet: float = 0.5, timeout: float = 30) -> None:
        """Waits until the bot has made no call but getUpdates for `quiet` seconds."""
        def last_activity() -> float:
            active = [c.time for c in self.calls if c.method.lower() != "getupdates"]
            return max(active, default=self.started_at)
        await self.wait_for(lambda: time.time() - last_activity() >= quiet, timeout)

    def _recent_calls(self: BotApiStandIn) -> list[str]:
        calls = [c for c in self.calls if c.method.lower() != "getupdates"][-8:]
        return [f"{c.method}({_short(c.params)}) -> {c.status}" for c in calls]


def _short(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={str(v)[:40]!s}" for k, v in params.items())
