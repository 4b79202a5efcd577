"""/cancel: stop the answer being written for this conversation (messages queued behind it still run)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.runtime import runtime_of
from bot.incoming import conversation_key


async def cancel_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Cancel the running answer; the answer itself says "Stopped." and is recorded as cancelled."""
    message = update.effective_message
    if not runtime_of(context).answers.cancel_running(conversation_key(message)):
        await message.reply_text(texts.NOTHING_TO_CANCEL)
