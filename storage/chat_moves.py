"""Moving a chat's rows to a new chat id, for a basic group that Telegram upgraded to a supergroup.

Telegram gives the supergroup a new id; the members' conversations, the chat's /mode and /settings
choices and the requests still waiting in the inbox follow it, so nobody loses their history. The
links from turns to Telegram messages stay where they are: those messages are still in the old chat.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.queries import get_or_add_placeholder, open_conversation
from storage.schema import Chat, Conversation, InboxItem, utc_now


def move_chat_rows(session: Session, old_chat_id: int, new_chat_id: int) -> int:
    """Move conversations, settings and waiting requests; returns how many conversations moved.

    A member who already has an open conversation in the new chat keeps it, and the one that moved
    is closed (kept, but no longer the one their next message continues)."""
    old = session.get(Chat, old_chat_id, with_for_update=True)
    if old is None or old_chat_id == new_chat_id:
        return 0
    new = get_or_add_placeholder(session, Chat, new_chat_id)
    new.type, new.title = "supergroup", new.title or old.title
    new.settings = {**old.settings, **new.settings}
    conversations = list(
        session.scalars(select(Conversation).where(Conversation.chat_id == old_chat_id))
    )
    for conversation in conversations:
        if conversation.closed_at is None and session.scalar(
            open_conversation(new_chat_id, conversation.user_id)
        ):
            conversation.closed_at = utc_now()
        conversation.chat_id = new_chat_id
        session.flush()  # one at a time: the open-conversation index must hold after each
    session.execute(
        update(InboxItem)
        .where(InboxItem.chat_id == old_chat_id)
        .values(chat_id=new_chat_id)
        .execution_options(synchronize_session=False)
    )
    session.delete(old)
    return len(conversations)
