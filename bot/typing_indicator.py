"""The "typing…" indicator kept up while an answer is written (Telegram shows it ~5 s per chat action)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import Forbidden, RetryAfter, TelegramError

from bot.telegram_errors import retry_after_seconds

log = logging.getLogger(__name__)


async def keep_typing(
    bot: Bot,
    chat_id: Callable[[], int],
    thread_id: int | None,
    *,
    needed: Callable[[], bool],
    refresh_s: Callable[[], float],
    on_forbidden: Callable[[Forbidden], None],
) -> None:
    """Send the typing action every `refresh_s()` seconds while `needed()`; a 429 waits, a 403 ends it.

    `chat_id` is read each time because a group upgraded to a supergroup changes its id mid-answer."""
    while needed():
        try:
            await bot.send_chat_action(chat_id(), ChatAction.TYPING, message_thread_id=thread_id)
        except RetryAfter as error:
            await asyncio.sleep(retry_after_seconds(error))
            continue
        except Forbidden as error:
            on_forbidden(error)
            return
        except TelegramError as error:
            log.debug("Typing indicator failed in chat %s: %s", chat_id(), error)
        await asyncio.sleep(refresh_s())
