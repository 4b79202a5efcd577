"""/new (alias /reset): close the current conversation so the next message starts a fresh one.

`start_new_conversation` is shared with the "New conversation" button under answers.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.messages import queue_for_conversation
from bot.runtime import BotRuntime, runtime_of
from bot.telegram_info import chat_info, sender_info
from storage.types import ChatInfo, UserInfo


async def new_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh conversation, after any answer still being written for the old one."""
    message = update.effective_message
    runtime = runtime_of(context)
    user, chat = sender_info(message), chat_info(message.chat)

    async def start_fresh() -> None:
        await start_new_conversation(runtime, user, chat)
        await message.reply_text(texts.NEW_CONVERSATION)

    queue_for_conversation(update, context, start_fresh, name="new")


async def start_new_conversation(runtime: BotRuntime, user: UserInfo, chat: ChatInfo) -> None:
    """Close the user's open conversation in this chat; their next message starts a new one."""
    await runtime.store.touch(user, chat)
    await runtime.store.new_conversation(chat.id, user.id)
