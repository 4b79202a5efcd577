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


def sender_info(message: Message) -> UserInfo:
    """Who sent the message. Messages sent on behalf of a chat (anonymous admins, channels) carry a
    placeholder user on Telegram, but a Bot API server may leave `from` out: then the chat is the sender."""
    if message.from_user is not None:
        return user_info(message.from_user)
    chat = message.sender_chat or message.chat
    return UserInfo(
        id=chat.id, first_name=chat.title or chat.first_name or "", last_name=None,
        username=chat.username, language_code=None,
    )


def conversation_key(message: Message) -> ConversationKey:
    """Whose conversation this message belongs to (the sender's, in this chat)."""
    return ConversationKey(chat_id=message.chat_id, user_id=sender_info(message).id)


def is_private(message: Message) -> bool:
    return message.chat.type == Chat.PRIVATE
