"""/new (alias /reset): close the current conversation so the next message starts a fresh one."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.conversation_actions import start_new_conversation
from bot.incoming import ConversationCall, conversation_call, conversation_key
from bot.outbox import Outbox
from bot.runtime import BotRuntime, runtime_of


async def new_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Start a fresh conversation, after any answer still being written for the old one."""
    message = update.effective_message
    request = conversation_call(message)
    await runtime_of(context).inbox.accept(update, conversation_key(message), request, new_conversation=True)


async def start_fresh(runtime: BotRuntime, outbox: Outbox, call: ConversationCall) -> None:
    """The work of a stored /new (or of the 🆕 button): close the open conversation, maybe say so."""
    await start_new_conversation(runtime, call.user, call.chat)
    if call.confirm:
        await outbox.send(call.target, texts.NEW_CONVERSATION)
