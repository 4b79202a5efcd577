"""/retry: write the last answer again; the old one is kept, marked superseded, and hidden from the model."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.conversation_actions import regenerate_last_answer
from bot.incoming import ConversationCall, conversation_call, conversation_key
from bot.outbox import Outbox
from bot.runtime import BotRuntime, runtime_of


async def retry_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Regenerate the answer to the newest user turn, in its turn behind any running answer."""
    message = update.effective_message
    await runtime_of(context).inbox.accept(update, conversation_key(message), conversation_call(message))


async def retry_last_answer(runtime: BotRuntime, outbox: Outbox, call: ConversationCall) -> None:
    """The work of a stored /retry (or of the 🔄 Retry button under a note)."""
    conversation = await runtime.store.active_conversation(call.chat.id, call.user.id)
    if not await regenerate_last_answer(runtime, outbox, conversation.id, call.target):
        await outbox.send(call.target, texts.NOTHING_TO_RETRY)
