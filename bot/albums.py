"""Collecting an album: the photos of one `media_group_id` arrive as separate updates, answered once.

Telegram sends each item of an album as its own message, the caption on only one of them, and gives no
sign of which item is the last. The collector gathers items by (chat, media_group_id) and calls the
album complete when no new item came for `wait_s` seconds (a debounce, restarted by each item).
The first item's handler queues the album's answer at once, so it keeps its place in the conversation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from telegram import Message

ALBUM_WAIT_S = 1.0


@dataclass(eq=False)
class Album:
    """The items received so far; `complete` is set once the debounce has passed."""

    key: tuple[int, str]
    items: list[Message] = field(default_factory=list)
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None


class AlbumCollector:
    """Open albums by (chat id, media_group_id); one per Application (kept in the BotRuntime)."""

    def __init__(self, wait_s: float = ALBUM_WAIT_S) -> None:
        self._wait_s = wait_s
        self._open: dict[tuple[int, str], Album] = {}

    def add(self, message: Message) -> Album | None:
        """Add an album item; returns the Album when this item opened it (its answer is to be queued)."""
        key = (message.chat_id, str(message.media_group_id))
        album = self._open.get(key)
        opened = album is None
        if album is None:
            album = self._open[key] = Album(key)
        album.items.append(message)
        if album.timer is not None:
            album.timer.cancel()
        album.timer = asyncio.get_running_loop().call_later(self._wait_s, album.complete.set)
        return album if opened else None

    async def collected(self, album: Album) -> list[Message]:
        """All items of the album in the order they were sent, once no more are coming."""
        try:
            await album.complete.wait()
        finally:  # also when the waiting answer is cancelled: a later item then opens a new album
            if self._open.get(album.key) is album:
                del self._open[album.key]
            if album.timer is not None:
                album.timer.cancel()
        return sorted(album.items, key=lambda item: item.message_id)

    def open_count(self) -> int:
        return len(self._open)
