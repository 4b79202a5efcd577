"""Telegram's User and Chat objects as the storage package's plain values (storage never sees PTB)."""

from __future__ import annotations

from telegram import Chat, Message, User

from bot.conversation_queue import ConversationKey
from storage.types import ChatInfo, UserInfo


def user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        first_name=user.first_name or "",
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
    )


def chat_info(chat: Chat) -> ChatInfo:
    return ChatInfo(id=chat.id, type=chat.type, title=chat.title, username=chat.username)


def conversation_key(message: Message) -> ConversationKey:
    """Whose conversation this message belongs to (the sender's, in this chat)."""
    sender = message.from_user
    return ConversationKey(chat_id=message.chat_id, user_id=sender.id if sender else message.chat_id)


def is_private(message: Message) -> bool:
    return message.chat.type == Chat.PRIVATE
