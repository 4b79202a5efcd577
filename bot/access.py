"""Who may use the bot: `ALLOWED_USER_IDS` / `ALLOWED_CHAT_IDS`, checked before any other handler runs.

Everyone else gets one polite refusal in the chat (per user, per run of the bot) and nothing more: no
handler runs, nothing is stored, the model is never called. In groups the bot refuses only when it is
addressed, so it never chatters in a group that simply contains it. A button press is different: each
one is answered (answerCallbackQuery, with the refusal as a pop-up), or the button would spin.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import texts
from bot.addressing import is_addressed_to_bot
from bot.press_answers import answer_press
from bot.settings import Settings

log = logging.getLogger(__name__)


def is_allowed(settings: Settings, user_id: int | None, chat_id: int | None) -> bool:
    """No allow-lists means open to all; admins are always allowed."""
    if not settings.allowed_user_ids and not settings.allowed_chat_ids:
        return True
    if user_id is not None and (user_id in settings.allowed_user_ids or user_id in settings.admin_user_ids):
        return True
    return chat_id is not None and chat_id in settings.allowed_chat_ids


def make_access_guard(
    settings: Settings,
) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]:
    """A TypeHandler callback for group -1 that stops updates from people who may not use the bot."""
    refused: set[int] = set()

    async def guard_access(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Let allowed users through; refuse the others once in the chat, and every press."""
        user, chat = update.effective_user, update.effective_chat
        if is_allowed(settings, user.id if user else None, chat.id if chat else None):
            return
        if update.callback_query:
            await answer_press(update.callback_query, texts.NOT_ALLOWED, show_alert=True)
        elif user is not None and user.id not in refused and _deserves_an_answer(update):
            refused.add(user.id)
            log.info(
                "refused user %s in chat %s (not in the allow-lists)", user.id, chat.id if chat else None
            )
            await update.effective_message.reply_text(texts.NOT_ALLOWED)
        raise ApplicationHandlerStop

    return guard_access


def _deserves_an_answer(update: Update) -> bool:
    message = update.effective_message
    if message is None:
        return False
    if is_addressed_to_bot(message):
        return True
    first_word = (message.text or "").split(maxsplit=1)[0] if message.text else ""
    return first_word.startswith("/") and first_word.casefold().endswith(
        f"@{message.get_bot().username}".casefold()
    )
