"""/new (alias /reset): close the current conversation so the next message starts a fresh one."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.conversation_actions import start_new_conversation
from bot.incoming import chat_info, sender_info
from bot.runtime import queue_for_conversation, runtime_of


async def new_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh conversation, after any answer still being written for the old one."""
    message = update.effective_message
    runtime = runtime_of(context)
    user, chat = sender_info(message), chat_info(message.chat)

    async def start_fresh() -> None:
        await start_new_conversation(runtime, user, chat)
        await message.reply_text(texts.NEW_CONVERSATION)

    queue_for_conversation(update, context, start_fresh, name="new")
