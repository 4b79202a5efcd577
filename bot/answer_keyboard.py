"""The inline keyboards under answers: "Regenerate" and "New conversation" under every normal answer,
"Retry" under the note that an answer was interrupted (INTERRUPTED_ANSWERS=note).

Kept apart from the handler (`bot.answer_buttons`) so that the answering flow can attach the keyboard
without importing the commands the handler reuses. The buttons carry no ids: the handler finds the
answer from the message the button is on.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts

CALLBACK_PREFIX = "answer:"
CALLBACK_PATTERN = rf"^{CALLBACK_PREFIX}"
REGENERATE_DATA = CALLBACK_PREFIX + "regenerate"
NEW_CONVERSATION_DATA = CALLBACK_PREFIX + "new"
RETRY_DATA = CALLBACK_PREFIX + "retry"


def answer_keyboard(*, regenerate: bool = True) -> InlineKeyboardMarkup:
    """Both buttons; `regenerate=False` for task answers (/caption, /story), which Regenerate would
    rewrite as a plain answer: their instruction and sampling are not stored with the turn."""
    buttons = [InlineKeyboardButton(texts.NEW_CONVERSATION_BUTTON, callback_data=NEW_CONVERSATION_DATA)]
    if regenerate:
        buttons.insert(0, InlineKeyboardButton(texts.REGENERATE_BUTTON, callback_data=REGENERATE_DATA))
    return InlineKeyboardMarkup([buttons])


def retry_keyboard() -> InlineKeyboardMarkup:
    """Under the note that an answer was interrupted: write it again, as /retry does."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(texts.RETRY_BUTTON, callback_data=RETRY_DATA)]])


# The keyboards by the names a reply kept for later is stored with (`bot.outbox`).
KEYBOARDS = {
    "answer": answer_keyboard,
    "task": lambda: answer_keyboard(regenerate=False),
    "retry": retry_keyboard,
}


def keyboard(name: str | None) -> InlineKeyboardMarkup | None:
    return KEYBOARDS[name]() if name else None
