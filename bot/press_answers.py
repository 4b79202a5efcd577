"""Answering a button press and redrawing its message, so that a refusal never undoes the press.

The answer (answerCallbackQuery) only stops the button's spinner and shows a short notice; what the
press does (a new conversation, a mode switch, erasing data) matters more. A server that refuses the
answer (the query expired while the bot was busy, or it lacks the method) is logged and ignored.
The message the button is on may be gone by the time it is redrawn; then the new text is sent anew.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardMarkup
from telegram.error import BadRequest, TelegramError

from bot.incoming import reply_target
from bot.telegram_errors import is_message_gone, is_not_modified

log = logging.getLogger(__name__)


async def answer_press(query: CallbackQuery, text: str | None = None, *, show_alert: bool = False) -> None:
    """Answer the press with `text` (an alert if asked); never raises a Telegram error."""
    try:
        await query.answer(text, show_alert=show_alert)
    except TelegramError as error:
        log.info("could not answer button press %s: %s", query.id, error)


async def edit_pressed_message(
    query: CallbackQuery, text: str, reply_markup: InlineKeyboardMarkup | None = None
) -> None:
    """Show `text` on the message the button is on; if that message is gone, send it as a new one."""
    try:
        await query.edit_message_text(text, reply_markup=reply_markup)
    except BadRequest as error:
        if is_not_modified(error):  # pressing the current choice again changes nothing
            return
        if not is_message_gone(error) and "not found" not in error.message.lower():
            raise
        log.info("the pressed message is gone (%s); sending its new text instead", error.message)
        target = reply_target(query.message)
        await query.get_bot().send_message(
            target.chat_id, text, reply_markup=reply_markup, message_thread_id=target.message_thread_id
        )
