"""Telegram's flood limits, so that a bot's throttling is tested against something that bites.

Telegram documents them loosely: about one message a second per chat with short bursts allowed, at
most 20 messages a minute in a group, about 30 a second overall; edits count like sends. Each limit
here is a sliding window (at most `count` calls in any `seconds`); a call over a limit is answered
429 with the seconds until the window frees a slot. Drafts (sendMessageDraft) are counted on their
own, per chat: their real limit is unpublished, so the default here is an assumption.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most `count` calls in any `seconds`."""

    count: int
    seconds: float


@dataclass
class FloodLimits:
    """Switchable limits; change them on `server.flood_limits` before or during a test."""

    enabled: bool = True
    private_chat: Window = Window(3, 3.0)
    group_chat: Window = Window(20, 60.0)
    overall: Window = Window(30, 1.0)
    drafts_per_chat: Window = Window(4, 2.0)


class FloodControl:
    """Remembers when each chat was written to and decides whether the next write must wait."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._history: dict[tuple[str, int | None], deque[float]] = defaultdict(deque)

    def retry_after(self, chat_id: int, chat_type: str, *, draft: bool = False) -> int | None:
        """Seconds to wait before this write is allowed, or None if it may go now."""
        if not self.limits.enabled:
            return None
        now = time.monotonic()
        waits = [self._wait(key, window, now) for key, window in self._windows(
            chat_id, chat_type, draft)]
        longest = max(waits)
        return max(1, math.ceil(longest)) if longest > 0 else None

    def record(self, chat_id: int, chat_type: str, *, draft: bool = False) -> None:
        now = time.monotonic()
        for key, _ in self._windows(chat_id, chat_type, draft):
            self._history[key].append(now)

    def _windows(self, chat_id: int, chat_type: str, draft: bool):
        if draft:
            return [(("draft", chat_id), self.limits.drafts_per_chat)]
        per_chat = self.limits.private_chat if chat_type == "private" else self.limits.group_chat
        return [(("chat", chat_id), per_chat), (("overall", None), self.limits.overall)]

    def _wait(self, key: tuple[str, int | None], window: Window, now: float) -> float:
        history = self._history[key]
        while history and history[0] <= now - window.seconds:
            history.popleft()
        if len(history) < window.count:
            return 0.0
        return history[0] + window.seconds - now
