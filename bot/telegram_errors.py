"""What a Bot API error means for the bot: wait, ignore, or send anew (for every writer); its kind."""

from __future__ import annotations

import warnings
from datetime import timedelta

from telegram.error import (BadRequest, ChatMigrated, Conflict, EndPointNotFound, Forbidden, InvalidToken,
                            NetworkError, RetryAfter, TelegramError, TimedOut)
from telegram.warnings import PTBDeprecationWarning


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, whether PTB reports it as int seconds or a timedelta."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def is_not_modified(error: TelegramError) -> bool:
    """An edit to the text (and buttons) the message already has: harmless."""
    return isinstance(error, BadRequest) and "not modified" in error.message.lower()


def is_message_gone(error: TelegramError) -> bool:
    """The message we meant to edit was deleted or can no longer be edited: send the text anew."""
    text = error.message.lower()
    return isinstance(error, BadRequest) and (
        "message to edit not found" in text or "can't be edited" in text
    )


# The first class an error is an instance of names its kind: subclasses before their bases.
_KINDS: tuple[tuple[type[TelegramError], str], ...] = (
    (RetryAfter, "retry_after"),
    (Forbidden, "forbidden"),
    (ChatMigrated, "chat_migrated"),
    (InvalidToken, "invalid_token"),
    (EndPointNotFound, "not_found"),
    (Conflict, "conflict"),
    (BadRequest, "bad_request"),
    (TimedOut, "timed_out"),
    (NetworkError, "network"),
)


def error_kind(error: TelegramError) -> str:
    """A short name for what went wrong, for metrics: retry_after, forbidden, not_modified, bad_request…"""
    if is_not_modified(error):
        return "not_modified"
    if is_message_gone(error):
        return "message_gone"
    return next((kind for cls, kind in _KINDS if isinstance(error, cls)), "other")
