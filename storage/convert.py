"""ORM rows → the frozen value objects in storage.types, so no session or row escapes the store.

Each function expects the row's relationships to be loaded already (the store uses selectinload
or builds the collections itself); a missing load raises instead of doing I/O.
"""

from __future__ import annotations

from storage.schema import Conversation, Image, InboxItem, Turn
from storage.types import ConversationRef, StoredImage, StoredRequest, StoredTurn


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


def stored_turn(row: Turn) -> StoredTurn:
    return StoredTurn(
        id=row.id,
        conversation_id=row.conversation_id,
        position=row.position,
        role=row.role,
        text=row.text,
        status=row.status,
        images=tuple(stored_image(link.image) for link in row.image_links),
        message_ids=tuple(sorted(message.message_id for message in row.messages)),
        finish_reason=row.finish_reason,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        time_to_first_token_s=row.time_to_first_token_s,
        total_s=row.total_s,
        created_at=row.created_at,
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
