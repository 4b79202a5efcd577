"""Showing an answer while the model writes it, within Telegram's flood limits.

The model writes a few tokens at a time and the person should watch the answer grow. `AnswerPreview`
does that for one answer; its writes go through the answer's `Delivery` (bot.delivery), which owns
the answer's messages, its pace and the one ladder that judges Telegram's errors:

- Private chats see a draft (`sendMessageDraft`, a ~30 s preview, re-sent if the text stalls). If
  drafts are refused, a message edited as the text grows, as in groups.
- Groups see a reply edited as the text grows; the final text is its last edit (`Delivery.deliver`).
- Text past 4096 characters is frozen at a natural boundary (`split_once`, `Delivery.freeze`) and
  continues in a new message, so no message ever exceeds Telegram's limit.
- The cadence adapts: the first text goes out as soon as there is a word to show, later ones at
  most one per `Delivery.min_interval_s` (STREAM_EDIT_INTERVAL_S), and in groups at most one per
  `group_min_interval_s` (default 4 s: 15 edits a minute stay under Telegram's 20 messages a minute
  per group and leave room for the final edit and other replies). Only the latest text is ever
  sent; intermediate updates are skipped, never queued, and `update` never waits for Telegram.
  Drafts keep their own clock (`Delivery.ready_at(draft=True)`): the final message never waits for it.
- A 429 pauses this answer for the time Telegram asks. PTB's `AIORateLimiter` may already retry
  inside the call; then we just see a slower call.
- A typing indicator is kept up until the preview is closed; in groups only until the answer's first
  message appears, because PTB's AIORateLimiter counts every chat action against the group's 20
  calls a minute, and the growing message already shows that the bot is at work.
- A preview Telegram refuses ends the previews, never the answer; a chat that blocked the bot ends
  both, quietly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from telegram.error import TelegramError

from bot.delivery import Delivery, Verdict
from bot.message_split import TELEGRAM_TEXT_LIMIT, split_once, utf16_length

log = logging.getLogger(__name__)

GROUP_MIN_INTERVAL_S = 4.0
TYPING_REFRESH_S = 4.0  # Telegram shows "typing…" for about 5 s per sendChatAction.
DRAFT_KEEPALIVE_S = 20.0  # a draft is a ~30 s preview: re-send it if the text stalls that long


class AnswerPreview:
    """The growing answer on screen until `close()`; then `Delivery.deliver` sends the final text."""

    def __init__(self, delivery: Delivery, *, group_min_interval_s: float = GROUP_MIN_INTERVAL_S) -> None:
        self._delivery = delivery
        self._private = delivery.target.is_private
        self._interval_s = (
            delivery.min_interval_s if self._private
            else max(delivery.min_interval_s, group_min_interval_s)
        )
        self._drafts = self._private  # False once drafts are refused: edit a message instead
        self._draft_id = secrets.randbelow(2**31 - 1) + 1  # non-zero, stable for this answer
        self._latest = ""  # the newest text given to update()
        self._shown = ""  # what the draft or the growing message shows now
        self._offset = 0  # how much of the text the answer's finished messages cover
        self._refused = False  # Telegram refused a preview: show nothing more until the final text
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AnswerPreview:
        self._typing = asyncio.create_task(self._keep_typing(), name="answer-typing")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Whatever was not closed is abandoned: an in-flight preview write is cancelled.
        self._begin_closing()
        for task in (self._flusher, self._typing):
            if task is not None and not task.done():
                task.cancel()
        await _wait_for(self._flusher, self._typing)

    def update(self, text_so_far: str) -> None:
        """Record the answer so far; a background task shows the latest text when allowed."""
        if self._closing.is_set() or self._delivery.closed:
            return
        self._latest = text_so_far
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._stream(), name="answer-stream")
        self._wake.set()

    async def close(self) -> None:
        """Stop previews and typing; a write in flight ends first, so the final text comes after it."""
        self._begin_closing()
        if self._typing is not None:
            self._typing.cancel()
        await _wait_for(self._flusher, self._typing)

    # ---- the growing text ------------------------------------------------------------------

    async def _stream(self) -> None:
        """Show the latest text whenever it changed and the throttle allows, until closing."""
        while not self._closing.is_set():
            await self._wait_for_news()
            while self._has_work():
                if not await self._pause_unless_closing(
                    self._delivery.ready_at(self._interval_s, draft=self._drafts) - time.monotonic()
                ):
                    return
                await self._step()

    async def _wait_for_news(self) -> None:
        """Wait for a new text; a draft that would expire meanwhile is scheduled to be re-sent."""
        keepalive = self._drafts and bool(self._shown)
        try:
            await asyncio.wait_for(self._wake.wait(), DRAFT_KEEPALIVE_S if keepalive else None)
        except asyncio.TimeoutError:
            self._shown = ""
        self._wake.clear()

    def _has_work(self) -> bool:
        if self._closing.is_set() or self._delivery.closed or self._refused:
            return False
        tail = self._latest[self._offset :]
        return utf16_length(tail) > TELEGRAM_TEXT_LIMIT or tail.strip() != self._shown

    async def _pause_unless_closing(self, seconds: float) -> bool:
        """Sleep, but wake early and return False if the answer is being concluded."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return not self._closing.is_set()

    async def _step(self) -> None:
        """One throttled write: freeze a full message, or show the text that follows the finished ones."""
        text = self._latest
        tail = text[self._offset :]
        freezing = utf16_length(tail) > TELEGRAM_TEXT_LIMIT
        try:
            if freezing:
                piece, rest = split_once(tail)
                await self._delivery.freeze(piece)
                self._offset, self._shown = len(text) - len(rest), ""
            else:
                await self._show(tail.strip())
        except TelegramError as error:
            drafting = self._drafts and not freezing
            self._react(self._delivery.judge(error, draft=drafting), error, drafting=drafting)

    async def _show(self, text: str) -> None:
        if not text:
            return  # Telegram rejects empty messages
        if self._drafts:
            await self._delivery.send_draft(self._draft_id, text)
        elif not await self._delivery.grow(text):
            return  # the growing message was deleted under us: the next step sends a new one
        self._shown = text

    def _react(self, verdict: Verdict, error: TelegramError, *, drafting: bool) -> None:
        """What a refused preview means here (the delivery's ladder has judged it already)."""
        if verdict is Verdict.CLOSED:
            self._begin_closing()
        elif verdict is Verdict.REFUSED and drafting:
            # Refused here (or a Bot API server without drafts, which answers 404): edit instead.
            log.info("Drafts unavailable in chat %s (%s); editing a message instead",
                     self._delivery.chat_id, error.message)
            self._drafts, self._shown = False, ""
        elif verdict is Verdict.REFUSED:
            # It would be refused again; the final text still goes out.
            log.warning("Stopped previewing an answer in chat %s: %s", self._delivery.chat_id,
                        error.message)
            self._refused = True

    # ---- typing ----------------------------------------------------------------------------

    def _typing_needed(self) -> bool:
        """In groups the first visible message ends it (see the module docstring)."""
        delivery = self._delivery
        if delivery.closed or self._closing.is_set():
            return False
        return self._private or (not delivery.message_ids and delivery.live_message_id is None)

    async def _keep_typing(self) -> None:
        """Send "typing…" every TYPING_REFRESH_S while needed; a 429 waits, a refusal ends it.
        One already showing (sent on receipt, `show_typing`) is refreshed when it would fade."""
        while self._typing_needed():
            shown_for = time.monotonic() - self._delivery.last_typing
            if shown_for < TYPING_REFRESH_S:
                await asyncio.sleep(TYPING_REFRESH_S - shown_for)
                continue
            try:
                await self._delivery.send_typing()
            except TelegramError as error:
                verdict = self._delivery.judge(error)
                if verdict is Verdict.RETRY:
                    await asyncio.sleep(max(0.0, self._delivery.ready_at(0.0) - time.monotonic()))
                    continue
                if verdict is Verdict.CLOSED:
                    self._begin_closing()
                log.debug("Typing indicator stopped in chat %s: %s", self._delivery.chat_id, error)
                return
            await asyncio.sleep(TYPING_REFRESH_S)  # read here, not bound early: tests shorten it

    def _begin_closing(self) -> None:
        self._closing.set()
        self._wake.set()  # the stream task may be waiting for a new text; let it see closing


async def show_typing(delivery: Delivery) -> None:
    """Send "typing…" once, as soon as a question arrives (before its image is fetched); the
    answer's preview keeps it up later. Its failure only costs the indicator."""
    try:
        await delivery.send_typing()
    except TelegramError as error:
        delivery.judge(error)
        log.debug("No typing indicator in chat %s: %s", delivery.chat_id, error)


async def _wait_for(*tasks: asyncio.Task[None] | None) -> None:
    """Wait for our tasks without re-raising their cancellation (ours still propagates)."""
    pending = [task for task in tasks if task is not None]
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            log.error("Answer preview task failed", exc_info=task.exception())
