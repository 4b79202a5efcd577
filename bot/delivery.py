"""Getting an answer's final text into Telegram whatever Telegram says: send, edit, split, fall back.

A `Delivery` is one answer's way into one chat. It knows where the answer goes (the chat, which a
group upgrade can move; the topic; the message quoted), the pace Telegram allows it, and the
messages the answer already has there. Every write of the answer, previews included
(`bot.previews`), goes through it, and every Bot API error it meets is judged in one place,
`Delivery.judge`:

- 429 `RetryAfter`: wait as long as Telegram asks, then write again (a draft's 429 holds back only
  drafts: Telegram counts drafts apart from messages);
- a network error or a 5xx: wait, longer each time (1 s, 2 s, 4 s… up to the policy's
  `max_backoff_s`), then write again;
- the chat moved to a supergroup: write again there;
- 403 `Forbidden` (blocked, removed from the group): nobody can read it, the answer ends quietly;
- anything else (a bad request, a method the Bot API server lacks): that write would be refused
  again, so the caller falls back (a preview stops; an edit becomes a new message) or gives up.

`deliver` makes the messages say the final text: the growing message is edited into the first piece,
the rest follow as new messages split at natural boundaries (`bot.message_split`), the buttons under
the last one. An edit Telegram refuses, or one that keeps failing on the network, becomes a new
message (the stale preview is deleted, so no truncated preview is left behind). Writes are retried
for as long as a real outage may last (`DeliveryPolicy.give_up_after_s`, minutes); then `deliver`
stops with `outcome` LATER and the part not yet shown (`unsent_text`) is for the caller to keep and
deliver later (`bot.outbox`). Nothing but `asyncio.CancelledError` escapes.

Drafts and messages have separate budgets: drafts are paced by their own clock, messages by theirs,
so the final text never waits for the draft clock. The final text's first write (the new message, or
the edit of the growing one) goes out at once, held back only by a wait Telegram asked for; in groups
PTB's `AIORateLimiter` (bot.app) holds it as long as the group's 20 messages a minute require and no
longer. Only its further pieces keep the answer's pace (`min_interval_s`).

Everything is plain text (no parse_mode), so model output can never break entity parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
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

FIRST_BACKOFF_S = 1.0
EDIT_NETWORK_FAILURES_BEFORE_NEW_MESSAGE = 2
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How long Telegram's trouble is waited out (DELIVERY_GIVE_UP_AFTER_S, DELIVERY_MAX_BACKOFF_S)."""

    give_up_after_s: float = 300.0
    max_backoff_s: float = 30.0

    def shorter(self, seconds: float) -> DeliveryPolicy:
        return DeliveryPolicy(min(self.give_up_after_s, seconds), self.max_backoff_s)


class DeliveryOutcome(Enum):
    """How the last `deliver` ended."""

    DELIVERED = "delivered"  # every piece is in the chat
    LATER = "later"  # Telegram kept failing for the whole policy's time: keep the rest for later
    REFUSED = "refused"  # Telegram refused the message itself: it never will take it
    CLOSED = "closed"  # the chat can't be written to (blocked, removed)


class Verdict(Enum):
    """What a refused write means for the one who tried it (see `Delivery.judge`)."""

    RETRY = "retry"  # write again once `Delivery.ready_at` has passed
    REFUSED = "refused"  # the same write would be refused again: fall back or give up
    CLOSED = "closed"  # the chat can't be written to: the answer ends quietly


class Delivery:
    """One answer's messages in one chat, written at the pace Telegram allows (see the module doc)."""

    def __init__(
        self,
        bot: Bot,
        target: ReplyTarget,
        *,
        min_interval_s: float = 1.0,
        policy: DeliveryPolicy = DeliveryPolicy(),
        live_message_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.target = target
        self.chat_id = target.chat_id  # changes if the group becomes a supergroup meanwhile
        self.min_interval_s = min_interval_s  # between two writes of this answer
        self.policy = policy
        self.closed = False  # the chat can't be written to (403)
        self.live_message_id = live_message_id  # the message still growing (edited previews)
        self.message_ids: list[int] = []  # the answer's finished messages, in order
        self.outcome = DeliveryOutcome.DELIVERED
        # Told of every message the answer gets while it is still being written, as it appears (the
        # turn links it at once, so a restart knows which preview an interrupted answer left); not of
        # the final text's last message, which `deliver` hands back as the answer ends (the answer's
        # close links it). Called, not awaited: nothing may come between Telegram taking a message
        # and this delivery counting it.
        self.on_new_message: Callable[[int], None] | None = None
        self._writing_the_end = False  # the final text's last piece is being written
        self._texts: list[str] = []  # their texts
        self._not_before = 0.0  # monotonic time before which Telegram asked us not to write
        self._drafts_not_before = 0.0  # the same for drafts, which Telegram counts on their own
        self._last_message = float("-inf")  # the last send or edit of a message
        self._last_draft = float("-inf")
        self.last_typing = float("-inf")  # the last "typing…" sent (bot.previews refreshes it)
        self._network_failures = 0  # in a row: the backoff grows with them
        self._give_up_at = float("inf")
        self._stale_previews: list[int] = []  # previews replaced by a new message, to delete

    # ---- the one ladder --------------------------------------------------------------------

    def judge(self, error: TelegramError, *, draft: bool = False) -> Verdict:
        """Take in what a refused write (a draft's, if `draft`) says about the chat, and tell the
        writer what to do next."""
        if isinstance(error, RetryAfter):
            seconds = retry_after_seconds(error)
            log.info("Telegram asked to wait %.0f s before writing %s to chat %s", seconds,
                     "drafts" if draft else "messages", self.chat_id)
            until = time.monotonic() + seconds
            if draft:
                self._drafts_not_before = max(self._drafts_not_before, until)
            else:
                self._not_before = max(self._not_before, until)
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
            backoff = min(self.policy.max_backoff_s, FIRST_BACKOFF_S * 2**self._network_failures)
            self._network_failures += 1
            log.warning("Telegram trouble writing to chat %s (%s); trying again in %.1f s",
                        self.chat_id, error, backoff)
            self._not_before = max(self._not_before, time.monotonic() + backoff)
            self._drafts_not_before = max(self._drafts_not_before, self._not_before)
            return Verdict.RETRY
        return Verdict.REFUSED

    def ready_at(self, interval_s: float | None = None, *, draft: bool = False) -> float:
        """The monotonic time of the next allowed message write (draft, if `draft`), `interval_s`
        after the last one of its kind."""
        interval = self.min_interval_s if interval_s is None else interval_s
        if draft:
            return max(self._drafts_not_before, self._last_draft + interval)
        return max(self._not_before, self._last_message + interval)

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
        """Make the answer's messages say `text` (`markup` under the last); the ids of all of them.
        `outcome` tells how it ended; after LATER, `unsent_text(text)` is what is still to show."""
        self.outcome = DeliveryOutcome.DELIVERED
        self._give_up_at = time.monotonic() + self.policy.give_up_after_s
        pieces = split_message(self._text_after_finished(text))
        if not pieces and self.live_message_id is not None:  # the text ended where a frozen one did
            await self._delete(self.live_message_id, "a stale preview")
            self.live_message_id = None
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            self._writing_the_end = last
            try:
                message_id = await self._deliver_piece(piece, markup if last else None, paced=index > 0)
            finally:
                self._writing_the_end = False
            if message_id is None:
                if self.outcome is DeliveryOutcome.REFUSED:
                    log.error("Could not deliver the end of an answer in chat %s", self.chat_id)
                break
            self._finished(message_id, piece)
        await self._delete_stale_previews()
        return list(self.message_ids)

    def unsent_text(self, text: str) -> str:
        """The part of the final `text` that is in no finished message yet."""
        return self._text_after_finished(text)

    def preview_left(self) -> int | None:
        """The preview still showing part of the answer, if any: where the rest belongs."""
        if self.live_message_id is not None:
            return self.live_message_id
        return next(iter(self._stale_previews), None)

    async def _deliver_piece(
        self, piece: str, markup: InlineKeyboardMarkup | None, *, paced: bool
    ) -> int | None:
        """Send `piece` (or edit the growing message into it), judged and retried until the policy
        gives up; None (and `outcome` says why) if it did not arrive. Unless `paced`, only a wait
        Telegram asked for holds it back (see the module docstring)."""
        while True:
            if self.closed:
                self.outcome = DeliveryOutcome.CLOSED
                return None
            wait = max(0.0, (self.ready_at() if paced else self._not_before) - time.monotonic())
            if time.monotonic() + wait > self._give_up_at:
                log.warning("Telegram kept failing an answer in chat %s; keeping it for later", self.chat_id)
                self.outcome = DeliveryOutcome.LATER
                return None
            await asyncio.sleep(wait)
            edit_id = self.live_message_id
            try:
                return await self._write_piece(piece, markup, edit_id)
            except TelegramError as error:
                verdict = self.judge(error)
                if verdict is Verdict.RETRY:
                    failing = self._network_failures >= EDIT_NETWORK_FAILURES_BEFORE_NEW_MESSAGE
                    if edit_id is not None and failing:
                        self._abandon_preview(edit_id, f"editing it keeps failing ({error})")
                    continue
                if verdict is Verdict.CLOSED:
                    continue
                if edit_id is None:
                    log.error("Telegram refused an answer in chat %s: %s", self.chat_id, error)
                    self.outcome = DeliveryOutcome.REFUSED
                    return None
                if is_message_gone(error):
                    self.live_message_id = None
                else:
                    self._abandon_preview(edit_id, f"Telegram refused the edit ({error.message})")

    async def _write_piece(
        self, piece: str, markup: InlineKeyboardMarkup | None, edit_id: int | None
    ) -> int:
        """One try: edit the growing message into `piece`, or send it as a new message."""
        if edit_id is None:
            message_id = await self.send(piece, markup)
        else:
            await self.edit(edit_id, piece, markup)
            message_id, self.live_message_id = edit_id, None
        self._network_failures = 0
        return message_id

    def _abandon_preview(self, message_id: int, why: str) -> None:
        """The final text goes as a new message; the preview it leaves is deleted (once it's out)."""
        log.warning("Sending the final text in chat %s as a new message: %s", self.chat_id, why)
        self.live_message_id = None
        self._stale_previews.append(message_id)

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

    async def _delete_stale_previews(self) -> None:
        """Delete the previews an answer moved away from, retried like the answer itself."""
        while self._stale_previews and not self.closed:
            try:
                await self.bot.delete_message(self.chat_id, self._stale_previews[0])
            except TelegramError as error:
                if self.judge(error) is Verdict.RETRY and time.monotonic() < self._give_up_at:
                    await asyncio.sleep(max(0.0, self.ready_at(0.0) - time.monotonic()))
                    continue
                log.info("Could not delete a preview in chat %s: %s", self.chat_id, error)
            self._stale_previews.pop(0)

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
            self._last_message = time.monotonic()
        if self.on_new_message is not None and not self._writing_the_end:
            self.on_new_message(message.message_id)
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
            self._last_message = time.monotonic()

    async def send_draft(self, draft_id: int, text: str) -> None:
        try:
            await self.bot.send_message_draft(
                self.chat_id, draft_id, text, message_thread_id=self.target.message_thread_id,
                parse_mode=None,
            )
        finally:
            self._last_draft = time.monotonic()

    async def send_typing(self) -> None:
        """A chat action is no message: it leaves the pace of the answer's writes alone."""
        self.last_typing = time.monotonic()
        await self.bot.send_chat_action(
            self.chat_id, ChatAction.TYPING, message_thread_id=self.target.message_thread_id
        )

    async def _delete(self, message_id: int, what: str) -> None:
        try:
            await self.bot.delete_message(self.chat_id, message_id)
        except TelegramError as error:
            log.info("Could not delete %s in chat %s: %s", what, self.chat_id, error)


async def send_reply(
    bot: Bot, target: ReplyTarget, text: str, *, policy: DeliveryPolicy = DeliveryPolicy()
) -> list[int]:
    """A short reply that is not an answer (an apology, a notice), delivered the same way; what a
    request's work says goes through its `bot.outbox.Outbox` instead, which keeps what fails."""
    return await Delivery(bot, target, min_interval_s=0.0, policy=policy).deliver(text)
