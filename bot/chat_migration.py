"""A basic group upgraded to a supergroup: the members' stored conversations follow it to its new id.

Telegram tells the bot with a service message in each chat (`migrate_to_chat_id` in the old group,
`migrate_from_chat_id` in the new supergroup); either one moves the rows (`Store.move_chat`, which
does nothing the second time). It runs before the access check: it answers nobody, it only keeps
the bot's own records right.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes, MessageHandler, filters

from bot.runtime import runtime_of

log = logging.getLogger(__name__)


async def on_chat_migrated(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Move the group's conversations, choices and waiting requests to the supergroup."""
    message = update.effective_message
    if message.migrate_to_chat_id:
        old, new = message.chat_id, message.migrate_to_chat_id
    else:
        old, new = message.migrate_from_chat_id, message.chat_id
    moved = await runtime_of(context).store.move_chat(old, new)
    if moved:
        log.info("group %s became supergroup %s: %d conversations moved with it", old, new, moved)


def chat_migration_handler() -> MessageHandler:
    return MessageHandler(filters.StatusUpdate.MIGRATE, on_chat_migrated)
