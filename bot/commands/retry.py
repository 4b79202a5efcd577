"""/retry: write the last answer again; the old one is kept, marked superseded, and hidden from the model."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.conversation_actions import regenerate_last_answer
from bot.incoming import reply_target, sender_info
from bot.runtime import queue_for_conversation, runtime_of


async def retry_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Regenerate the answer to the newest user turn, in its turn behind any running answer."""
    message = update.effective_message
    runtime = runtime_of(context)

    async def regenerate() -> None:
        conversation = await runtime.store.active_conversation(message.chat_id, sender_info(message).id)
        if not await regenerate_last_answer(runtime, context.bot, conversation.id, reply_target(message)):
            await message.reply_text(texts.NOTHING_TO_RETRY)

    queue_for_conversation(update, context, regenerate, name="retry")
