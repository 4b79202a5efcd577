"""Getting an answer's final text into Telegram whatever Telegram says: send, edit, split, fall back.

A `Delivery` is one answer's way into one chat. It knows where the answer goes (the chat, which a
group upgrade can move; the topic; the message quoted), the pace Telegram allows it, and the
messages the answer already has there. Every write of the answer, previews included
(`bot.previews`), goes through it, and every Bot API error it meets is judged in one place,
`Delivery.judge`:

- 429 `RetryAfter`: wait as long as Telegram asks, then write again;
- a network error: wait a moment, then write again;
- the chat moved to a supergroup: write again there;
- 403 `Forbidden` (blocked, removed from the group): nobody can read it, the answer ends quietly;
- anything else (a bad request, a method the Bot API server lacks): that write would be refused
  again, so the caller falls back (a preview stops; an edit becomes a new message) or gives up.

`deliver` makes the messages say the final text: the growing message is edited into the first piece,
the rest follow as new messages split at natural boundaries (`bot.message_split`), the buttons under
the last one. An edit Telegram refuses becomes a new message (the stale preview is deleted); each
piece is tried `FINAL_DELIVERY_ATTEMPTS` times; what could not be delivered is logged, and the
returned ids show what arrived. Nothing but `asyncio.CancelledError` escapes.

Everything is plain text (no parse_mode), so model output can never break entity parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import Enum

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.incoming import ReplyTarget
from bot.message_split import split_message
from bot.telegram_errors import is_message_gone, is_not_modified, retry_after_seconds

log = logging.getLogger(__name__)

FINAL_DELIVERY_ATTEMPTS = 5
NETWORK_RETRY_DELAY_S = 1.0
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class Verdict(Enum):
    """What a refused write means for the one who tried it (see `Delivery.judge`)."""

    RETRY = "retry"  # write again once `Delivery.ready_at` has passed
    REFUSED = "refused"  # the same write would be refused again: fall back or give up
    CLOSED = "closed"  # the chat can't be written to: the answer ends quietly


class Delivery:
    """One answer's messages in one chat, written at the pace Telegram allows (see the module doc)."""

    def __init__(self, bot: Bot, target: ReplyTarget, *, min_interval_s: float = 1.0) -> None:
        self.bot = bot
        self.target = target
        self.chat_id = target.chat_id  # changes if the group becomes a supergroup meanwhile
        self.min_interval_s = min_interval_s  # between two writes of this answer
        self.closed = False  # the chat can't be written to (403)
        self.live_message_id: int | None = None  # the message still growing (edited previews)
        self.message_ids: list[int] = []  # the answer's finished messages, in order
        self._texts: list[str] = []  # their texts
        self._not_before = 0.0  # monotonic time before which Telegram asked us not to write
        self._last_write = float("-inf")

    # ---- the one ladder --------------------------------------------------------------------

    def judge(self, error: TelegramError) -> Verdict:
        """Take in what a refused write says about the chat, and tell the writer what to do next."""
        if isinstance(error, RetryAfter):
            seconds = retry_after_seconds(error)
            log.info("Telegram asked to wait %.0f s before writing to chat %s", seconds, self.chat_id)
            self._not_before = max(self._not_before, time.monotonic() + seconds)
            return Verdict.RETRY
        if isinstance(error, Forbidden):
            log.info("Chat %s can't be written to (%s); dropping this answer", self.chat_id, error.message)
            self.closed = True
            return Verdict.CLOSED
        if isinstance(error, ChatMigrated):
            log.info("Chat %s is now supergroup %s; writing there", self.chat_id, error.new_chat_id)
            self.chat_id = error.new_chat_id
            return Verdict.RETRY
        if isinstance(error, NetworkError) and not isinstance(error, BadRequest):
            log.warning("Network error writing an answer to chat %s: %s", self.chat_id, error)
            self._not_before = max(self._not_before, time.monotonic() + NETWORK_RETRY_DELAY_S)
            return Verdict.RETRY
        return Verdict.REFUSED

    def ready_at(self, interval_s: float | None = None) -> float:
        """The monotonic time of the next allowed write, `interval_s` after the last one."""
        interval = self.min_interval_s if interval_s is None else interval_s
        return max(self._not_before, self._last_write + interval)

    # ---- while the answer grows (for bot.previews) -----------------------------------------

    async def grow(self, text: str) -> bool:
        """Show `text` in the answer's growing message, sending it the first time (one try; raises).

        False if the message was deleted under us: the next call sends a new one."""
        if self.live_message_id is None:
            self.live_message_id = await self.send(text)
            return True
        try:
            await self.edit(self.live_message_id, text)
        except BadRequest as error:
            if not is_message_gone(error):
                raise
            self.live_message_id = None
            return False
        return True

    async def freeze(self, piece: str) -> None:
        """Make `piece` a finished message while the rest is still being written (one try; raises)."""
        message_id = self.live_message_id
        if message_id is not None:
            try:
                await self.edit(message_id, piece)
            except BadRequest as error:
                if not is_message_gone(error):
                    raise  # a 429 or the like leaves the live message in place for the retry
                message_id = None  # deleted under us: the piece becomes a new message
        if message_id is None:
            message_id = await self.send(piece)
        self.live_message_id = None
        self._finished(message_id, piece)

    # ---- the final text --------------------------------------------------------------------

    async def deliver(self, text: str, markup: InlineKeyboardMarkup | None = None) -> list[int]:
        """Make the answer's messages say `text` (`markup` under the last); the ids of all of them."""
        pieces = split_message(self._text_after_finished(text))
        if not pieces and self.live_message_id is not None:  # the text ended where a frozen one did
            await self._delete(self.live_message_id, "a stale preview")
        edit_id, self.live_message_id = self.live_message_id, None
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            message_id = await self._deliver_piece(piece, markup if last else None, edit_id)
            edit_id = None
            if message_id is None:
                if not self.closed:
                    log.error("Could not deliver the end of an answer in chat %s", self.chat_id)
                break
            self._finished(message_id, piece)
        return list(self.message_ids)

    async def _deliver_piece(
        self, piece: str, markup: InlineKeyboardMarkup | None, edit_id: int | None
    ) -> int | None:
        """Send `piece` (or edit message `edit_id` into it), judged and retried; None if it failed."""
        for _ in range(FINAL_DELIVERY_ATTEMPTS):
            if self.closed:
                return None
            await asyncio.sleep(max(0.0, self.ready_at() - time.monotonic()))
            try:
                if edit_id is None:
                    return await self.send(piece, markup)
                await self.edit(edit_id, piece, markup)
                return edit_id
            except TelegramError as error:
                if self.judge(error) is not Verdict.REFUSED:
                    continue
                if edit_id is None:
                    log.error("Telegram refused an answer in chat %s: %s", self.chat_id, error)
                    return None
                if not is_message_gone(error):
                    log.warning("Could not edit the preview of an answer in chat %s (%s); sending the "
                                "final text as a new message", self.chat_id, error.message)
                    await self._delete(edit_id, "the preview")
                edit_id = None
        return None

    def _finished(self, message_id: int, text: str) -> None:
        self.message_ids.append(message_id)
        self._texts.append(text)

    def _text_after_finished(self, text: str) -> str:
        """The part of `text` not yet in a finished message (whitespace at the seams aside)."""
        position = 0
        for piece in self._texts:
            position = len(text) - len(text[position:].lstrip())
            if not text.startswith(piece, position):
                # The final text disagrees with what was already sent: repeat rather than lose.
                log.warning("Final text in chat %s does not continue the %d message(s) sent "
                            "while streaming; sending it whole", self.chat_id, len(self._texts))
                return text
            position += len(piece)
        return text[position:]

    # ---- Telegram calls (they raise; the caller judges) -------------------------------------

    async def send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> int:
        reply = None
        if self.target.reply_to_message_id is not None:  # still sent if the question was deleted
            reply = ReplyParameters(self.target.reply_to_message_id, allow_sending_without_reply=True)
        try:
            message = await self.bot.send_message(
                self.chat_id, text, message_thread_id=self.target.message_thread_id,
                reply_parameters=reply, reply_markup=markup, parse_mode=None,
                link_preview_options=_NO_PREVIEW,
            )
        finally:
            self._last_write = time.monotonic()
        return message.message_id

    async def edit(self, message_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        try:
            await self.bot.edit_message_text(
                text, self.chat_id, message_id, reply_markup=markup, parse_mode=None,
                link_preview_options=_NO_PREVIEW,
            )
        except BadRequest as error:
            if not is_not_modified(error):
                raise  # "not modified" means the message already says this: nothing to do
        finally:
            self._last_write = time.monotonic()

    async def send_draft(self, draft_id: int, text: str) -> None:
        try:
            await self.bot.send_message_draft(
                self.chat_id, draft_id, text, message_thread_id=self.target.message_thread_id,
                parse_mode=None,
            )
        finally:
            self._last_write = time.monotonic()

    async def send_typing(self) -> None:
        """A chat action is no message: it leaves the pace of the answer's writes alone."""
        await self.bot.send_chat_action(
            self.chat_id, ChatAction.TYPING, message_thread_id=self.target.message_thread_id
        )

    async def _delete(self, message_id: int, what: str) -> None:
        try:
            await self.bot.delete_message(self.chat_id, message_id)
        except TelegramError as error:
            log.info("Could not delete %s in chat %s: %s", what, self.chat_id, error)


async def send_reply(bot: Bot, target: ReplyTarget, text: str) -> list[int]:
    """A short reply that is not an answer (an apology, usage help, a notice), delivered the same way."""
    return await Delivery(bot, target, min_interval_s=0.0).deliver(text)
