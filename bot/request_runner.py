"""Working on one stored request: first what a restart, a crash or an outage left, then the work itself.

In this order, for the oldest waiting request of a conversation this process holds:

1. Replies Telegram did not take before are delivered (`Outbox.redeliver`); until they are, the
   request and its conversation wait (for a day at most: then they are given up on).
2. A request older than STALE_MESSAGE_AGE_S is not answered now: the person is told so, quoting it,
   and how to ask again.
3. Answers a crash interrupted (this request's turns still PENDING) are closed as failed, and their
   truncated previews say so; then, as INTERRUPTED_ANSWERS says, the request is answered again
   ("answer_again", also after a shutdown cut an answer short) or the person gets a note with a
   🔄 Retry button ("note").
4. The work of the request's kind (the table `bot.app` hands in).
5. Done, unless a reply is waiting for Telegram: then the request keeps it for later. (An answer
   that ends the work marks its request done in the transaction that records it.)

A cancel by the person (/cancel) ends the request; a shutdown leaves it waiting for the next start
(with notes, it ends it with one). A database that is unavailable leaves it waiting too, and its
sender is told once that nothing can be saved right now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from telegram import Bot
from telegram.error import TelegramError

from bot import texts
from bot.apologies import apology_for
from bot.conversation_queue import CANCEL_BY_SHUTDOWN, CANCEL_BY_USER
from bot.incoming import IncomingMessage, RegenerateCall, ReplyTarget, TaskCall
from bot.outbox import Outbox
from bot.request_codec import NEW, Request, RequestUnreadable, decode
from bot.runtime import BotRuntime
from storage.errors import DatabaseUnavailable
from storage.schema import utc_now
from storage.types import InboxStatus, StoredRequest, StoredTurn, TurnStatus

log = logging.getLogger(__name__)

Work = Callable[[BotRuntime, Outbox, Request], Awaitable[None]]
INTERRUPTED = "interrupted"  # the finish_reason of an answer a crash cut short
UNDELIVERED_KEPT = timedelta(days=1)  # replies Telegram refuses for longer are given up on


def is_ready(request: StoredRequest) -> bool:
    """Whether the request may be worked on now (kept replies wait for their retry time)."""
    return request.retry_at is None or request.retry_at <= utc_now()


async def run_request(
    runtime: BotRuntime,
    bot: Bot,
    request: StoredRequest,
    work: Mapping[str, Work],
    *,
    first_to_tell: Callable[[int], bool],
    turns: list[StoredTurn] | None = None,
) -> bool:
    """Work on `request`; True if it moved on (done, or its replies kept for later).
    `first_to_tell(request id)` says whether its sender has yet to hear the database is down;
    `turns`: the turns stored for the request, if read with its claim (else they are read here)."""
    store = runtime.store
    outbox = Outbox(
        bot, runtime.delivery_policy, store=store, request=request,
        retry_interval_s=runtime.settings.undelivered_retry_interval_s,
    )
    if request.outbox and utc_now() - request.received_at > UNDELIVERED_KEPT:
        log.warning("giving up on %d replies of request %s that Telegram never took", len(request.outbox),
                    request.id)
    elif request.outbox and not await outbox.redeliver(request.outbox):
        return True
    if request.status is InboxStatus.UNDELIVERED:
        await store.inbox.finish([request.id])
        return True
    try:
        wanted = decode(request.kind, request.payload, request.chat_id)
    except RequestUnreadable as error:
        log.error("dropping stored request %s: %s", request.id, error)
        await store.inbox.finish([request.id])
        return True
    try:
        await _work_on(runtime, outbox, request, wanted, work, turns)
    except DatabaseUnavailable as error:
        log.warning("request %s waits for the database: %s", request.id, error)
        if first_to_tell(request.id):
            await outbox.send(where_to_answer(wanted), texts.CANNOT_SAVE_WAITING)
        return False
    if outbox.postponed:
        await outbox.save(work_done=True)
    elif not outbox.done:
        await store.inbox.finish([request.id])
    return True


async def _work_on(
    runtime: BotRuntime,
    outbox: Outbox,
    request: StoredRequest,
    wanted: Request,
    work: Mapping[str, Work],
    turns: list[StoredTurn] | None,
) -> None:
    """Steps 2 to 4 of the module docstring; cancels by the person end here, shutdowns go on up."""
    try:
        if turns is None:
            turns = await runtime.store.turns_for_request(request.id)
        outbox.request_turns = turns
        if any(turn.role == "assistant" and turn.status is TurnStatus.COMPLETE for turn in turns):
            return  # answered, and then stopped before the request was marked done
        if request.kind != NEW and _too_old(runtime, request):
            await _tell_too_old(runtime, outbox, request, wanted)
            return
        interrupted = await _close_interrupted(runtime, request, turns)
        if interrupted and runtime.settings.interrupted_answers == "note":
            await _note_interrupted(runtime, outbox, interrupted, where_to_answer(wanted))
            return
        await _replace_previews(outbox.bot, request.chat_id, interrupted, texts.INTERRUPTED_PREVIEW)
        await work[request.kind](runtime, outbox, wanted)
    except asyncio.CancelledError as cancel:
        reason = cancel.args[0] if cancel.args else None
        if reason == CANCEL_BY_USER:
            _uncancel()
            return
        if reason == CANCEL_BY_SHUTDOWN and runtime.settings.interrupted_answers == "note":
            await asyncio.shield(runtime.store.inbox.finish([request.id]))  # the note told them
        raise
    except DatabaseUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - logged with its traceback; the person is told
        log.error("request %s in chat %s failed", request.id, request.chat_id, exc_info=error)
        await outbox.send(where_to_answer(wanted), apology_for(error))


def where_to_answer(request: Request) -> ReplyTarget:
    return request.reply if isinstance(request, TaskCall) else request.target


def _too_old(runtime: BotRuntime, request: StoredRequest) -> bool:
    age = runtime.settings.stale_message_age_s
    return age > 0 and utc_now() - request.received_at > timedelta(seconds=age)


async def _tell_too_old(runtime: BotRuntime, outbox: Outbox, request: StoredRequest, wanted: Request) -> None:
    """Say the request was not answered in time, quoting it; an album's other items go with it."""
    if request.media_group_id is not None:
        items = await runtime.store.inbox.album(request.chat_id, request.media_group_id)
        await runtime.store.inbox.finish([item.id for item in items if item.id != request.id])
    quoted = _first_message_id(wanted)
    target = where_to_answer(wanted)
    if quoted is not None:
        target = replace(target, reply_to_message_id=quoted)
    log.info("request %s in chat %s is too old to answer now", request.id, request.chat_id)
    await outbox.send(target, texts.NOT_ANSWERED_IN_TIME)


def _first_message_id(wanted: Request) -> int | None:
    if isinstance(wanted, (IncomingMessage, TaskCall)):
        return wanted.message_ids[0] if wanted.message_ids else None
    if isinstance(wanted, RegenerateCall):
        return wanted.buttons_message_id
    return wanted.message_id


async def _close_interrupted(
    runtime: BotRuntime, request: StoredRequest, turns: list[StoredTurn]
) -> list[StoredTurn]:
    """This request's answers that a crash (PENDING) or a shutdown (CANCELLED) cut short; the
    PENDING ones are closed as failed here (this process holds the conversation: nobody writes them)."""
    store = runtime.store
    cut_short = []
    for turn in turns:
        if turn.role != "assistant" or turn.status not in (TurnStatus.PENDING, TurnStatus.CANCELLED):
            continue
        if turn.status is TurnStatus.PENDING:
            log.info("answer %s in chat %s was interrupted; finishing it", turn.id, request.chat_id)
            await store.close_assistant_turn(turn.id, TurnStatus.FAILED, finish_reason=INTERRUPTED)
        cut_short.append(turn)
    return cut_short


async def _replace_previews(bot: Bot, chat_id: int, turns: list[StoredTurn], text: str) -> None:
    """The truncated messages of interrupted answers say so instead (in groups they'd stay forever)."""
    for turn in turns:
        if turn.status is not TurnStatus.PENDING:
            continue  # a shutdown already finished that one with its note
        for message_id in turn.message_ids:
            try:
                await bot.edit_message_text(text, chat_id, message_id)
            except TelegramError as error:
                log.info("could not mark message %s of an interrupted answer: %s", message_id, error)


async def _note_interrupted(
    runtime: BotRuntime, outbox: Outbox, turns: list[StoredTurn], target: ReplyTarget
) -> None:
    """INTERRUPTED_ANSWERS=note: the last preview (or a new message) says so, with a Retry button."""
    crashed = [turn for turn in turns if turn.status is TurnStatus.PENDING]
    if not crashed:
        return  # a shutdown already said so, with the button
    turn = crashed[-1]
    *earlier, last = turn.message_ids or (None,)
    await _replace_previews(outbox.bot, target.chat_id, [replace(turn, message_ids=tuple(earlier))],
                            texts.INTERRUPTED_PREVIEW)
    delivery = outbox.delivery(target)
    delivery.live_message_id = last
    shown, _ = await outbox.finish(delivery, texts.INTERRUPTED_NOTE, "retry")
    await runtime.store.link_messages(turn.id, shown)  # the Retry button finds the answer by it


def _uncancel() -> None:
    """The cancel was the person's and is handled: the task goes on (Python 3.11+ counts cancels)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()
