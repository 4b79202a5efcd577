"""Turning a growing model answer into Telegram messages without tripping Telegram's limits.

The model writes an answer a few tokens at a time; the user should watch it grow, and the final
text must arrive whatever Telegram says in between. `AnswerRenderer` owns that for one answer:

- Private chats show the growing text as a draft (`sendMessageDraft`, a ~30 s preview, re-sent if
  the text stalls) and send the final text as a normal message. If drafts are refused, they fall
  back to editing a message, as in groups.
- Groups get a reply that is edited as the text grows; the final text is a last edit.
- Text past 4096 characters is frozen at a natural boundary (see `message_split`) and continues
  in a new message, so no message ever exceeds Telegram's limit.
- Writes are throttled: at most one per `min_interval_s` for this answer, and in groups at most one
  per `group_min_interval_s` (default 4 s: 15 edits a minute stay under Telegram's 20 messages a
  minute per group and leave room for the final edit and other replies). Only the latest text is
  ever sent; intermediate updates are skipped, never queued.
- A 429 (`RetryAfter`) pauses this answer for the time Telegram asks, then the latest text goes
  out. PTB's `AIORateLimiter` may already retry inside the call; then we just see a slower call.
- A typing indicator is kept up until the answer is finished; in groups only until the answer's
  first message appears, because PTB's AIORateLimiter counts every chat action against the
  group's 20 calls a minute, and the growing message already shows that the bot is at work.
- A chat that blocked the bot (403) ends the answer quietly. Nothing but `asyncio.CancelledError`
  escapes to the caller; a final text that could not be delivered is logged, and the returned
  message ids show what arrived.

Everything is plain text (no parse_mode), so model output can never break entity parsing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from enum import Enum
from typing import Any

import telegram
from telegram import InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.message_split import (
    TELEGRAM_TEXT_LIMIT,
    split_message,
    split_once,
    utf16_length,
)
from bot.telegram_errors import is_message_gone, is_not_modified, retry_after_seconds
from bot.typing_indicator import keep_typing

log = logging.getLogger(__name__)

GROUP_MIN_INTERVAL_S = 4.0
TYPING_REFRESH_S = 4.0  # Telegram shows "typing…" for about 5 s per sendChatAction.
DRAFT_KEEPALIVE_S = 20.0  # a draft is a ~30 s preview: re-send it if the text stalls that long
FINAL_DELIVERY_ATTEMPTS = 5
NETWORK_RETRY_DELAY_S = 1.0
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class _Strategy(Enum):
    DRAFT = "draft"
    EDIT = "edit"


class AnswerRenderer:
    """Shows one answer while it is written, then delivers its final text (see the module doc)."""

    def __init__(
        self,
        bot: telegram.Bot,
        chat_id: int,
        *,
        is_private: bool,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        min_interval_s: float = 1.0,
        final_reply_markup: InlineKeyboardMarkup | None = None,
        group_min_interval_s: float = GROUP_MIN_INTERVAL_S,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._is_private = is_private
        self._reply_to = reply_to_message_id
        self._thread_id = message_thread_id
        self._min_interval_s = min_interval_s
        self._stream_interval_s = (
            min_interval_s if is_private else max(min_interval_s, group_min_interval_s)
        )
        self._final_markup = final_reply_markup
        self._strategy = _Strategy.DRAFT if is_private else _Strategy.EDIT
        self._draft_id = secrets.randbelow(2**31 - 1) + 1  # non-zero, stable for this answer

        self._latest = ""  # the newest text given to update()
        self._shown = ""  # what the draft or the live message shows now
        self._live_message_id: int | None = None  # the group message still being edited
        self._committed_ids: list[int] = []  # messages whose text is final
        self._committed_texts: list[str] = []  # their texts, in order
        self._committed_offset = 0  # how much of the streamed text they cover
        self._not_before = 0.0  # monotonic time before which Telegram asked us not to write
        self._last_write = float("-inf")
        self._stream_broken = False
        self._stopped = False  # the chat can't be written to (403)
        self._done = False

        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> AnswerRenderer:
        self._typing = asyncio.create_task(self._keep_typing(), name="answer-typing")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Whatever was not finished is abandoned: an in-flight preview write is cancelled.
        self._done = True
        self._begin_closing()
        for task in (self._flusher, self._typing):
            if task is not None and not task.done():
                task.cancel()
        await self._wait_for(self._flusher, self._typing)

    async def update(self, text_so_far: str) -> None:
        """Record the answer so far; a background task shows the latest text when allowed."""
        if self._done or self._stopped:
            return
        self._latest = text_so_far
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._stream(), name="answer-stream")
        self._wake.set()

    async def finish(self, final_text: str) -> list[int]:
        """Deliver the final answer as normal message(s); return the ids of all its messages."""
        return await self._conclude(final_text, self._final_markup)

    async def fail(self, apology: str, partial_text: str = "") -> list[int]:
        """Deliver `partial_text` (if any) followed by `apology`, without the final markup."""
        partial = partial_text.rstrip()
        text = f"{partial}\n\n{apology}" if partial.strip() else apology
        return await self._conclude(text, None)

    # ---- streaming -------------------------------------------------------------------------

    async def _stream(self) -> None:
        """Flush the latest text whenever it changed and the throttle allows, until closing."""
        while not self._closing.is_set():
            await self._wait_for_news()
            while self._has_stream_work():
                delay = max(self._not_before, self._last_write + self._stream_interval_s)
                if not await self._pause_unless_closing(delay - time.monotonic()):
                    return
                await self._stream_step()

    async def _wait_for_news(self) -> None:
        """Wait for a new text; a draft that would expire meanwhile is scheduled to be re-sent."""
        keepalive = self._strategy is _Strategy.DRAFT and bool(self._shown)
        try:
            await asyncio.wait_for(self._wake.wait(), DRAFT_KEEPALIVE_S if keepalive else None)
        except asyncio.TimeoutError:
            self._shown = ""
        self._wake.clear()

    def _has_stream_work(self) -> bool:
        if self._closing.is_set() or self._stopped or self._stream_broken:
            return False
        tail = self._latest[self._committed_offset :]
        return utf16_length(tail) > TELEGRAM_TEXT_LIMIT or tail.strip() != self._shown

    async def _pause_unless_closing(self, seconds: float) -> bool:
        """Sleep, but wake early and return False if the answer is being concluded."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return not self._closing.is_set()

    async def _stream_step(self) -> None:
        """One throttled write: freeze a full message, or show the text that follows them."""
        text = self._latest
        tail = text[self._committed_offset :]
        try:
            if utf16_length(tail) > TELEGRAM_TEXT_LIMIT:
                piece, rest = split_once(tail)
                await self._freeze(piece)
                self._committed_offset = len(text) - len(rest)
            else:
                await self._show(tail.strip())
        except RetryAfter as error:
            self._obey(error)
        except Forbidden as error:
            self._stop_quietly(error)
        except ChatMigrated as error:
            self._chat_id = error.new_chat_id
        except (BadRequest, EndPointNotFound, InvalidToken) as error:
            # A preview Telegram rejects (or a method the server lacks, 404) would be rejected
            # again; the final text still goes out.
            log.warning("Stopped previewing an answer in chat %s: %s", self._chat_id, error.message)
            self._stream_broken = True
        except TelegramError as error:
            log.info("Preview of an answer in chat %s failed, will retry: %s", self._chat_id, error)
        finally:
            self._last_write = time.monotonic()

    async def _freeze(self, piece: str) -> None:
        """Make `piece` a finished message of the answer while the rest is still being written."""
        message_id = self._live_message_id
        if message_id is not None:
            try:
                await self._edit(message_id, piece, None)
            except BadRequest as error:
                if not is_message_gone(error):
                    raise  # a 429 or the like leaves the live message in place for the retry
                message_id = None  # deleted under us: send the piece as a new message
        if message_id is None:
            message_id = await self._send(piece, None)
        self._live_message_id = None
        self._commit(message_id, piece)
        self._shown = ""

    async def _show(self, text: str) -> None:
        if not text:
            return  # Telegram rejects empty messages
        if self._strategy is _Strategy.DRAFT:
            await self._show_draft(text)  # sets _shown itself: it may switch to editing
            return
        if self._live_message_id is None:
            self._live_message_id = await self._send(text, None)
        else:
            try:
                await self._edit(self._live_message_id, text, None)
            except BadRequest as error:
                if not is_message_gone(error):
                    raise
                self._live_message_id = None  # someone deleted it: the next step sends a new one
                return
        self._shown = text

    async def _show_draft(self, text: str) -> None:
        try:
            await self._bot.send_message_draft(
                self._chat_id, self._draft_id, text, message_thread_id=self._thread_id,
                parse_mode=None,
            )
        except (BadRequest, EndPointNotFound, InvalidToken) as error:
            # Refused here (or a Bot API server without drafts, which answers 404): edit instead.
            log.info("Drafts unavailable in chat %s (%s); editing a message instead",
                     self._chat_id, error.message)
            self._strategy = _Strategy.EDIT
            self._shown = ""
            return
        self._shown = text

    # ---- the final text --------------------------------------------------------------------

    async def _conclude(self, text: str, markup: InlineKeyboardMarkup | None) -> list[int]:
        if self._done:
            log.warning("Answer in chat %s was already concluded; ignoring", self._chat_id)
            return list(self._committed_ids)
        self._done = True
        await self._stop_background()
        if self._stopped:
            return list(self._committed_ids)
        pieces = split_message(self._text_after_committed(text))
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            edit_id = self._live_message_id if index == 0 else None
            message_id = await self._deliver(piece, markup if last else None, edit_id)
            if message_id is None:
                if not self._stopped:
                    log.error("Could not deliver the end of an answer in chat %s", self._chat_id)
                break
            self._commit(message_id, piece)
        else:
            if not pieces and self._live_message_id is not None:
                await self._delete_stale_live_message()
        return list(self._committed_ids)

    def _commit(self, message_id: int, text: str) -> None:
        self._committed_ids.append(message_id)
        self._committed_texts.append(text)

    def _text_after_committed(self, text: str) -> str:
        """The part of `text` not yet in a finished message (whitespace at the seams aside)."""
        position = 0
        for piece in self._committed_texts:
            position = len(text) - len(text[position:].lstrip())
            if not text.startswith(piece, position):
                # The final text disagrees with what was already sent: repeat rather than lose.
                log.warning("Final text in chat %s does not continue the %d message(s) sent "
                            "while streaming; sending it whole", self._chat_id,
                            len(self._committed_texts))
                return text
            position += len(piece)
        return text[position:]

    async def _deliver(self, piece: str, markup: InlineKeyboardMarkup | None,
                       edit_id: int | None) -> int | None:
        """Send or edit one final piece, retrying 429s and network errors; None if it failed."""
        for _ in range(FINAL_DELIVERY_ATTEMPTS):
            if self._stopped:
                return None
            wait = max(self._not_before, self._last_write + self._min_interval_s)
            await asyncio.sleep(max(0.0, wait - time.monotonic()))
            try:
                if edit_id is None:
                    return await self._send(piece, markup)
                await self._edit(edit_id, piece, markup)
                return edit_id
            except RetryAfter as error:
                self._obey(error)
            except Forbidden as error:
                self._stop_quietly(error)
            except ChatMigrated as error:
                self._chat_id = error.new_chat_id
            except BadRequest as error:
                if edit_id is None:
                    log.error("Telegram refused an answer in chat %s: %s", self._chat_id, error)
                    return None
                if not is_message_gone(error):
                    await self._abandon_preview(edit_id, error)
                edit_id = None  # the live message vanished or can't be edited: send the text anew
            except NetworkError as error:
                log.warning("Network error delivering an answer in chat %s: %s", self._chat_id,
                            error)
                self._not_before = time.monotonic() + NETWORK_RETRY_DELAY_S
            except TelegramError as error:  # e.g. a Bot API server without editMessageText (404)
                if edit_id is None:
                    log.error("Telegram refused an answer in chat %s: %s", self._chat_id, error)
                    return None
                await self._abandon_preview(edit_id, error)
                edit_id = None
            finally:
                self._last_write = time.monotonic()
        return None

    async def _abandon_preview(self, message_id: int, error: TelegramError) -> None:
        """The preview can't be edited into the final text: remove it; the text is sent anew."""
        log.warning("Could not edit the preview of an answer in chat %s (%s); sending the final "
                    "text as a new message", self._chat_id, error.message)
        try:
            await self._bot.delete_message(self._chat_id, message_id)
        except TelegramError as delete_error:
            log.info("Could not delete the preview in chat %s: %s", self._chat_id, delete_error)

    async def _delete_stale_live_message(self) -> None:
        """The final text ended where a frozen message did; the preview after it must go."""
        try:
            await self._bot.delete_message(self._chat_id, self._live_message_id)
        except TelegramError as error:
            log.info("Could not delete a stale preview in chat %s: %s", self._chat_id, error)
        self._live_message_id = None

    # ---- Telegram calls --------------------------------------------------------------------

    async def _send(self, text: str, markup: InlineKeyboardMarkup | None) -> int:
        reply = None
        if self._reply_to is not None:
            reply = ReplyParameters(self._reply_to, allow_sending_without_reply=True)
        message = await self._bot.send_message(
            self._chat_id, text, message_thread_id=self._thread_id, reply_parameters=reply,
            reply_markup=markup, parse_mode=None, link_preview_options=_NO_PREVIEW,
        )
        return message.message_id

    async def _edit(self, message_id: int, text: str, markup: InlineKeyboardMarkup | None) -> None:
        try:
            await self._bot.edit_message_text(
                text, self._chat_id, message_id, reply_markup=markup, parse_mode=None,
                link_preview_options=_NO_PREVIEW,
            )
        except BadRequest as error:
            if not is_not_modified(error):
                raise  # "not modified" means the message already says this: nothing to do

    # ---- background helpers ----------------------------------------------------------------

    def _obey(self, error: RetryAfter) -> None:
        seconds = retry_after_seconds(error)
        log.info("Telegram asked to wait %.0f s before writing to chat %s", seconds, self._chat_id)
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    def _stop_quietly(self, error: Forbidden) -> None:
        log.info("Chat %s can't be written to (%s); dropping this answer", self._chat_id,
                 error.message)
        self._stopped = True
        self._begin_closing()

    def _typing_needed(self) -> bool:
        """In groups the first visible message ends it (see the module docstring)."""
        if self._stopped:
            return False
        return self._is_private or (not self._committed_ids and self._live_message_id is None)

    async def _keep_typing(self) -> None:
        await keep_typing(
            self._bot,
            lambda: self._chat_id,
            self._thread_id,
            needed=self._typing_needed,
            refresh_s=lambda: TYPING_REFRESH_S,  # read late: tests shorten it
            on_forbidden=self._stop_quietly,
        )

    def _begin_closing(self) -> None:
        self._closing.set()
        self._wake.set()  # the stream task may be waiting for a new text; let it see closing

    async def _stop_background(self) -> None:
        """Stop typing, and let the preview finish its in-flight write before the final text."""
        self._begin_closing()
        if self._typing is not None:
            self._typing.cancel()
        await self._wait_for(self._flusher, self._typing)

    @staticmethod
    async def _wait_for(*tasks: asyncio.Task[Any] | None) -> None:
        """Wait for our tasks without re-raising their cancellation (ours still propagates)."""
        pending = [task for task in tasks if task is not None]
        if not pending:
            return
        await asyncio.wait(pending)
        for task in pending:
            if not task.cancelled() and task.exception() is not None:
                log.error("Answer rendering task failed", exc_info=task.exception())
