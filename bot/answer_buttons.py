"""The buttons under an answer: "Regenerate" is /retry for that answer, "New conversation" is /new,
and "Retry" (under the note that an answer was interrupted) is /retry for the interrupted answer.

Regenerate and Retry look the answer up by the message the button is on (`Store.turn_for_message`)
and only work for the person who asked (in groups everyone sees everyone's buttons) and only on the
newest answer of their open conversation: older answers are part of a history the model has already
built on. New conversation starts a fresh conversation for whoever presses it. All are stored in the
inbox and run in the presser's conversation, behind any answer still being written, like the
commands they stand for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import CallbackQuery, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, ContextTypes

from bot import texts
from bot.answer_keyboard import NEW_CONVERSATION_DATA, REGENERATE_DATA, RETRY_DATA
from bot.answering import generate_answer
from bot.conversation_actions import regenerate_last_answer
from bot.conversation_queue import ConversationKey
from bot.incoming import ConversationCall, RegenerateCall, ReplyTarget, chat_info, reply_target, user_info
from bot.outbox import Outbox
from bot.press_answers import answer_press
from bot.prompting import USER_STATUSES_SHOWN
from bot.runtime import BotRuntime, runtime_of
from storage.types import ConversationRef, StoredTurn, TurnStatus

log = logging.getLogger(__name__)

LATER_ANSWER_STATUSES = frozenset({TurnStatus.COMPLETE, TurnStatus.PENDING})


async def answer_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Route a press of a button under an answer; anything else with our prefix is stale or forged."""
    query = update.callback_query
    if query.data == NEW_CONVERSATION_DATA:
        await _new_conversation(update, context)
    elif query.data == REGENERATE_DATA:
        await _regenerate(update, context)
    elif query.data == RETRY_DATA:
        await _retry_interrupted(update, context)
    else:
        await answer_press(query, texts.BUTTON_EXPIRED, show_alert=True)


async def unknown_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button no handler knows (an old bot version's, or forged data): say so, never leave it spinning."""
    log.info(
        "unknown callback data %r from user %s",
        update.callback_query.data,
        update.effective_user.id,
    )
    await answer_press(update.callback_query, texts.BUTTON_EXPIRED, show_alert=True)


class DetachedPressHandler(CallbackQueryHandler):
    """Presses that come with no `message` (buttons of inline-mode messages): this bot never sends
    those, so the press is forged or stale; `unknown_button` answers it before any handler needs
    the message."""

    def check_update(self, update: object) -> bool:
        return isinstance(update, Update) and update.callback_query is not None and (
            update.callback_query.message is None
        )


async def _new_conversation(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    user, chat = user_info(query.from_user), chat_info(query.message.chat)
    target = reply_target(query.message).quoting(None)
    call = ConversationCall(user=user, chat=chat, target=target, confirm=False)
    inbox = runtime_of(context).inbox
    await inbox.accept(update, ConversationKey(chat.id, user.id), call, new_conversation=True)
    await answer_press(query, texts.NEW_CONVERSATION)


async def _pressed_answer(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[StoredTurn, ConversationRef, list[StoredTurn]] | None:
    """The answer the pressed button is under, its conversation and history, if the presser may
    act on it; else None, and the press is answered with why not."""
    query = update.callback_query
    store = runtime_of(context).store
    answer = await store.turn_for_message(query.message.chat.id, query.message.message_id)
    conversation = await store.conversation(answer.conversation_id) if answer else None
    if answer is None or conversation is None or answer.role != "assistant":
        await answer_press(query, texts.ANSWER_GONE, show_alert=True)
        return None
    if conversation.user_id != query.from_user.id:
        await answer_press(query, texts.NOT_YOUR_ANSWER, show_alert=True)
        return None
    return answer, conversation, await store.history(conversation.id)


async def _regenerate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    pressed = await _pressed_answer(update, context)
    if pressed is None:
        return
    answer, conversation, history = pressed
    if conversation.closed_at is not None or not is_newest_answer(history, answer.id):
        await answer_press(query, texts.ONLY_NEWEST_ANSWER, show_alert=True)
        return
    call = RegenerateCall(
        conversation_id=conversation.id,
        answer_id=answer.id,
        target=_regenerated_target(query, history, answer),
        buttons_chat_id=query.message.chat.id,
        buttons_message_id=query.message.message_id,
    )
    key = ConversationKey(conversation.chat_id, conversation.user_id)
    await runtime_of(context).inbox.accept(update, key, call)
    await answer_press(query, texts.REGENERATING)


async def _retry_interrupted(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """🔄 Retry under the note that an answer was interrupted: /retry, if it is still the newest."""
    query = update.callback_query
    pressed = await _pressed_answer(update, context)
    if pressed is None:
        return
    answer, conversation, history = pressed
    later = [turn for turn in history if turn.position > answer.position]
    if conversation.closed_at is not None or any(turn.status is TurnStatus.COMPLETE for turn in later):
        await answer_press(query, texts.ONLY_NEWEST_ANSWER, show_alert=True)
        return
    user, chat = user_info(query.from_user), chat_info(query.message.chat)
    target = _regenerated_target(query, history, answer)
    call = ConversationCall(user=user, chat=chat, target=target, confirm=False)
    key = ConversationKey(conversation.chat_id, conversation.user_id)
    await runtime_of(context).inbox.accept(update, key, call)
    await answer_press(query, texts.REGENERATING)


async def regenerate_pressed(runtime: BotRuntime, outbox: Outbox, call: RegenerateCall) -> None:
    """The work of a stored 🔄 press. It waited behind earlier work; something may have superseded
    the answer meanwhile. Done again after a restart, it just writes the answer again."""
    store = runtime.store
    if outbox.request_id is not None and await store.turns_for_request(outbox.request_id):
        await generate_answer(runtime, outbox, call.conversation_id, call.target)
        return
    current = await store.conversation(call.conversation_id)
    history = await store.history(call.conversation_id)
    if current is None or current.closed_at is not None or not is_newest_answer(history, call.answer_id):
        log.info("not regenerating answer %s: no longer the newest", call.answer_id)
        return
    try:  # the old answer's buttons would only lead to "only the newest answer…" now
        await outbox.bot.edit_message_reply_markup(
            call.buttons_chat_id, call.buttons_message_id, reply_markup=None
        )
    except TelegramError as error:
        log.info("could not remove the buttons of a regenerated answer: %s", error)
    await regenerate_last_answer(runtime, outbox, current.id, call.target)


def is_newest_answer(history: Sequence[StoredTurn], answer_id: int) -> bool:
    """True if this complete answer is the one the conversation ends with (failed later tries aside)."""
    answer = next((turn for turn in history if turn.id == answer_id), None)
    if answer is None or answer.role != "assistant" or answer.status is not TurnStatus.COMPLETE:
        return False
    return not any(
        (turn.role == "user" and turn.status in USER_STATUSES_SHOWN)
        or (turn.role == "assistant" and turn.status in LATER_ANSWER_STATUSES)
        for turn in history
        if turn.position > answer.position
    )


def _regenerated_target(
    query: CallbackQuery, history: Sequence[StoredTurn], answer: StoredTurn
) -> ReplyTarget:
    """Where the new answer goes: the same chat and topic, quoting the question in groups."""
    questions = [turn for turn in history if turn.role == "user" and turn.position < answer.position]
    question_ids = questions[-1].message_ids if questions else ()
    return reply_target(query.message).quoting(question_ids[0] if question_ids else None)
