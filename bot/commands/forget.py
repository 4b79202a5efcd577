"""/forget: erase everything stored about the user, after they confirm with a button.

Erased means erased: the rows go (their conversations, images, settings, requests waiting in the
inbox) and the store leaves no readable copy in any database file (`Store.forget_user`).
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.press_answers import answer_press, edit_pressed_message
from bot.runtime import runtime_of
from bot.incoming import sender_info

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "forget"
CALLBACK_PATTERN = rf"^{CALLBACK_PREFIX}:(yes|no):\d+$"


def confirmation_keyboard(user_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.FORGET_CONFIRM_BUTTON, callback_data=f"{CALLBACK_PREFIX}:yes:{user_id}"
                ),
                InlineKeyboardButton(
                    texts.FORGET_KEEP_BUTTON, callback_data=f"{CALLBACK_PREFIX}:no:{user_id}"
                ),
            ]
        ]
    )


async def forget_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask for confirmation before erasing anything."""
    message = update.effective_message
    await message.reply_text(texts.FORGET_QUESTION, reply_markup=confirmation_keyboard(sender_info(message).id))


async def forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Erase (or keep) the data of the user who asked; nobody else may press their button."""
    query = update.callback_query
    _, choice, owner = query.data.split(":")
    if query.from_user.id != int(owner):
        await answer_press(query, texts.FORGET_NOT_YOURS, show_alert=True)
        return
    await answer_press(query)
    if choice != "yes":
        await edit_pressed_message(query, texts.FORGET_KEPT)
        return
    runtime = runtime_of(context)
    await runtime.answers.cancel_user(query.from_user.id)
    runtime.inbox.forget_user(query.from_user.id)
    await runtime.store.forget_user(query.from_user.id)
    log.info("erased the data of user %s on their request", query.from_user.id)
    await edit_pressed_message(query, texts.FORGET_DONE)
