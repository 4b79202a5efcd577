"""Answering a button press (answerCallbackQuery) so that a refusal never undoes the press.

The answer only stops the button's spinner and shows a short notice; what the press does (a new
conversation, a mode switch, erasing data) matters more. A server that refuses the answer (the query
expired while the bot was busy, or it lacks the method) is logged and otherwise ignored.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery
from telegram.error import TelegramError

log = logging.getLogger(__name__)


async def answer_press(query: CallbackQuery, text: str | None = None, *, show_alert: bool = False) -> None:
    """Answer the press with `text` (an alert if asked); never raises a Telegram error."""
    try:
        await query.answer(text, show_alert=show_alert)
    except TelegramError as error:
        log.info("could not answer button press %s: %s", query.id, error)
