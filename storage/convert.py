"""Rows (ORM objects, or Core rows of the same columns) → the frozen value objects in storage.types,
so no session or row escapes the store.

Turns are read straight into `StoredTurn`s with Core statements (storage.turn_reads), not through here.
"""

from __future__ import annotations

from storage.schema import Conversation, Image, InboxItem
from storage.types import ConversationRef, StoredImage, StoredRequest


def conversation_ref(row: Conversation) -> ConversationRef:
    return ConversationRef(
        id=row.id,
        chat_id=row.chat_id,
        user_id=row.user_id,
        created_at=row.created_at,
        closed_at=row.closed_at,
    )


def stored_image(row: Image) -> StoredImage:
    return StoredImage(
        id=row.id,
        sha256=row.sha256,
        data=row.data,
        mime_type=row.mime_type,
        width=row.width,
        height=row.height,
        file_unique_id=row.file_unique_id,
    )
def stored_request(row: InboxItem) -> StoredRequest:
    return StoredRequest(
        id=row.id,
        update_id=row.update_id,
        chat_id=row.chat_id,
        user_id=row.user_id,
        kind=row.kind,
        payload=dict(row.payload),
        received_at=row.received_at,
        status=row.status,
        media_group_id=row.media_group_id,
        outbox=tuple(row.outbox or ()),
        retry_at=row.retry_at,
    )
