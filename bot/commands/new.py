"""/new (alias /reset): close the current conversation so the next message starts a fresh one."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.messages import queue_for_conversation
from bot.runtime import runtime_of
from bot.telegram_info import chat_info, user_info


async def new_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh conversation, after any answer still being written for the old one."""
    message = update.effective_message
    store = runtime_of(context).store

    async def start_fresh() -> None:
        await store.touch(user_info(message.from_user), chat_info(message.chat))
        await store.new_conversation(message.chat_id, message.from_user.id)
        await message.reply_text(texts.NEW_CONVERSATION)

    queue_for_conversation(update, context, start_fresh, name="new")
