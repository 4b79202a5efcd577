"""Deleting conversations and the images nobody references any more: for forget and retention.

Ids are fetched (and locked, where the database can) before anything is deleted, so a row that
changes while the delete runs is never half removed. Children go first and every statement's
row count is added up, so callers can report exactly how much was removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Delete, delete, exists, select
from sqlalchemy.orm import Session

from storage.schema import (
    Chat, Conversation, Image, InboxClaim, InboxItem, Turn, TurnImage, TurnMessage, User,
)

# Keeps IN (...) lists well under every database's bound-parameter limit.
CHUNK = 500


def forget_user_rows(session: Session, user_id: int) -> int:
    """Remove a user, their conversations in every chat, their private chat, their requests in
    the inbox, and images only they referenced. Returns the number of rows removed."""
    private_chat = select(Chat.id).where(Chat.id == user_id, Chat.type == "private")
    conversation_ids = session.scalars(
        select(Conversation.id)
        .where((Conversation.user_id == user_id) | Conversation.chat_id.in_(private_chat))
        .with_for_update()
    )
    removed = delete_conversations(session, list(conversation_ids))
    removed += _execute(session, delete(InboxItem).where(InboxItem.user_id == user_id))
    removed += _execute(session, delete(InboxClaim).where(InboxClaim.user_id == user_id))
    removed += _execute(session, delete(Chat).where(Chat.id.in_(private_chat)))
    removed += _execute(session, delete(User).where(User.id == user_id))
    return removed


def purge_conversations_idle_since(session: Session, cutoff: datetime) -> int:
    """Remove conversations with no activity since `cutoff`; returns how many conversations."""
    conversation_ids = list(
        session.scalars(
            select(Conversation.id)
            .where(Conversation.last_activity_at < cutoff)
            .with_for_update()
        )
    )
    delete_conversations(session, conversation_ids)
    delete_orphan_images(session)
    return len(conversation_ids)


def delete_conversations(session: Session, conversation_ids: Sequence[int]) -> int:
    """Delete the conversations, their turns, message links, image links, and images left
    unreferenced by that. Returns the number of rows removed."""
    removed = 0
    for ids in _chunks(conversation_ids):
        turn_ids = list(session.scalars(select(Turn.id).where(Turn.conversation_id.in_(ids))))
        image_ids: set[int] = set()
        for turns in _chunks(turn_ids):
            links = TurnImage.turn_id.in_(turns)
            image_ids.update(session.scalars(select(TurnImage.image_id).where(links)))
            removed += _execute(session, delete(TurnImage).where(links))
            removed += _execute(
                session, delete(TurnMessage).where(TurnMessage.turn_id.in_(turns))
            )
            removed += _execute(session, delete(Turn).where(Turn.id.in_(turns)))
        removed += _execute(session, delete(Conversation).where(Conversation.id.in_(ids)))
        removed += delete_orphan_images(session, image_ids)
    return removed


def delete_orphan_images(
    session: Session, candidate_ids: Iterable[int] | None = None
) -> int:
    """Delete images no turn shows; only among `candidate_ids` when given. Returns the count."""
    unreferenced = ~exists().where(TurnImage.image_id == Image.id)
    if candidate_ids is None:
        return _execute(session, delete(Image).where(unreferenced))
    removed = 0
    for ids in _chunks(sorted(candidate_ids)):
        removed += _execute(session, delete(Image).where(Image.id.in_(ids), unreferenced))
    return removed


def _execute(session: Session, statement: Delete) -> int:
    result = session.execute(
        statement.execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined]


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
