"""/start and /help: what the bot does and how to use it, in private chats and in groups."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain the bot (also the answer to /start)."""
    await update.effective_message.reply_text(texts.HELP.format(bot_username=context.bot.username))
