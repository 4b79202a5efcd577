"""Collecting an album: its photos arrive as separate updates, and are answered once, as one question.

Telegram sends each item of an album as its own message, the caption on only one of them, and gives no
sign of which item is the last. Each item is stored in the inbox as it arrives (an album's items may
even reach different bot processes); the album is the waiting requests that share its
`media_group_id`, once no new item came for `ALBUM_WAIT_S` seconds. Its first item's request does the
work, the others are done with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from storage.inbox import InboxStore
from storage.schema import utc_now
from storage.types import StoredRequest

ALBUM_WAIT_S = 1.0


async def collected_album(
    inbox: InboxStore,
    first: StoredRequest,
    settle: Callable[[], Awaitable[None]],
    wait_s: float = ALBUM_WAIT_S,
) -> list[StoredRequest]:
    """The album's items in the order they were sent, once no more are coming. `settle` waits for
    items this process accepted but has not written yet."""
    if first.media_group_id is None:
        return [first]
    while True:
        await settle()
        items = await inbox.album(first.chat_id, first.media_group_id)
        newest = max((item.received_at for item in items), default=first.received_at)
        quiet_for = utc_now() - newest
        if quiet_for >= timedelta(seconds=wait_s):
            return sorted(items, key=lambda item: item.payload.get("message_id", 0))
        await asyncio.sleep((timedelta(seconds=wait_s) - quiet_for).total_seconds())
