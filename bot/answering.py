"""The path of one message: store the user's turn, rebuild the conversation, stream the answer, record it.

Every step that can go wrong for a known reason ends in a short, specific apology and a stored status
(the user's words are always kept); only unknown errors escape, to be logged by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from telegram import Bot, InlineKeyboardMarkup, ReplyParameters
from telegram.error import TelegramError

from bot import texts
from bot.answer_keyboard import answer_keyboard
from bot.chat_preferences import available_modes, chosen_preamble, generation_params, read_preferences
from bot.conversation_queue import CANCEL_BY_SHUTDOWN, CANCEL_BY_USER
from bot.downloads import ImageSource, fetch_image
from bot.errors import ImageDownloadFailed, ImageTooLarge
from bot.prompting import build_conversation
from bot.rendering import AnswerRenderer
from bot.runtime import BotRuntime
from model.errors import ModelError, PromptTooLong, ServiceStopped
from model.types import Conversation, FinishReason, GenerationParams, GenerationResult, Preamble, TextDelta
from storage.errors import ImageRejected
from storage.types import ChatInfo, ImageInput, TurnStatus, UserInfo

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ReplyTarget:
    """Where and how the answer is shown."""

    chat_id: int
    is_private: bool
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None


@dataclass(frozen=True)
class IncomingMessage:
    """A message for the model, already stripped of Telegram specifics the flow does not need."""

    user: UserInfo
    chat: ChatInfo
    text: str
    message_id: int
    target: ReplyTarget
    images: tuple[ImageSource, ...] = ()  # in order; an album brings several
    message_ids: tuple[int, ...] = ()  # every message carrying the turn (an album's); default (message_id,)


async def answer_message(runtime: BotRuntime, bot: Bot, incoming: IncomingMessage, **options) -> None:
    """Store the message as a user turn, then answer it (or apologise for what went wrong).

    `options` go to `generate_answer` (a task's params, mode, text shaping).
    """
    options.setdefault("final_reply_markup", answer_keyboard())  # Regenerate / New conversation
    conversation_id = await store_question(runtime, bot, incoming)
    if conversation_id is not None:
        await generate_answer(runtime, bot, conversation_id, incoming.target, **options)


async def store_question(runtime: BotRuntime, bot: Bot, incoming: IncomingMessage) -> int | None:
    """Store the message as a user turn with its images; its conversation's id, or None (and an
    apology sent, the words kept as a FAILED turn) when an image could not be had."""
    store = runtime.store
    await store.touch(incoming.user, incoming.chat)
    conversation = await store.active_conversation(incoming.chat.id, incoming.user.id)
    images, problem = await _fetch_images(runtime, bot, incoming.images)
    message_ids = incoming.message_ids or (incoming.message_id,)
    if problem is None:
        try:
            await store.add_user_turn(conversation.id, incoming.text, images, message_ids)
        except ImageRejected as error:
            log.info("image rejected in chat %s: %s", incoming.chat.id, error)
            problem = texts.IMAGE_UNREADABLE
    if problem is not None:
        # Keep the person's words even though their image is missing; FAILED keeps it out of prompts.
        kept = await store.add_user_turn(conversation.id, incoming.text, (), message_ids)
        await store.set_turn_status(kept.id, TurnStatus.FAILED)
        await _send_apology(bot, incoming.target, problem)
        return None
    return conversation.id


async def _fetch_images(
    runtime: BotRuntime, bot: Bot, sources: tuple[ImageSource, ...]
) -> tuple[tuple[ImageInput, ...], str | None]:
    """The message's images, or the apology that explains why we could not get one of them."""
    images = []
    try:
        for source in sources:
            images.append(await fetch_image(bot, runtime.store, source, runtime.settings.max_image_bytes))
    except ImageTooLarge as error:
        return (), texts.IMAGE_TOO_LARGE.format(size_mb=error.size / 2**20, limit_mb=error.limit / 2**20)
    except ImageDownloadFailed:
        return (), texts.IMAGE_DOWNLOAD_FAILED
    return tuple(images), None


async def generate_answer(
    runtime: BotRuntime,
    bot: Bot,
    conversation_id: int,
    target: ReplyTarget,
    *,
    params: GenerationParams | None = None,
    final_reply_markup: InlineKeyboardMarkup | None = None,
    mode: str | None = None,
    shape_text: Callable[[str], str] | None = None,
) -> bool:
    """Answer the newest user turn of a conversation; False if there was nothing to answer.

    `params` replaces the chat's generation settings (a task such as a story may need sampling);
    `final_reply_markup` goes under the final message (e.g. Regenerate / New conversation buttons).
    `mode` names a preamble to use instead of the chat's (if it exists); `shape_text` trims what the
    model wrote (e.g. to one sentence) both while streaming and in what is sent and stored.
    """
    store = runtime.store
    history = await store.history(conversation_id)
    preamble, chat_params = await chat_generation_setup(runtime, target.chat_id)
    params = params or chat_params
    preamble = runtime.modes.get(mode, preamble) if mode else preamble
    conversation = await asyncio.to_thread(build_conversation, history, preamble)
    if conversation is None:
        return False
    turn = await store.open_assistant_turn(conversation_id)
    renderer = AnswerRenderer(
        bot,
        target.chat_id,
        is_private=target.is_private,
        reply_to_message_id=target.reply_to_message_id,
        message_thread_id=target.message_thread_id,
        min_interval_s=runtime.settings.stream_edit_interval_s,
        final_reply_markup=final_reply_markup,
    )
    outcome = _Outcome()
    if shape_text is not None:
        outcome.shape = shape_text
    try:
        async with renderer:
            await _stream_into(runtime, conversation, params, renderer, outcome)
    except asyncio.CancelledError:  # cancelled while delivering the final text
        if outcome.status is not TurnStatus.COMPLETE:
            outcome.status, outcome.finish_reason = TurnStatus.CANCELLED, FinishReason.CANCELLED.value
        raise
    finally:  # also after an unexpected error: the turn must not stay pending
        await _record_even_if_cancelled(runtime, turn.id, outcome)
    if outcome.cancel_reason is not None:
        raise asyncio.CancelledError(outcome.cancel_reason)
    return True


async def _record_even_if_cancelled(runtime: BotRuntime, turn_id: int, outcome: _Outcome) -> None:
    """Store how the answer ended; a cancel arriving meanwhile (shutdown) waits for the write first."""
    recording = asyncio.ensure_future(_record(runtime, turn_id, outcome))
    try:
        await asyncio.shield(recording)
    except asyncio.CancelledError:
        await recording
        raise


async def _record(runtime: BotRuntime, turn_id: int, outcome: _Outcome) -> None:
    result = outcome.result
    await runtime.store.close_assistant_turn(
        turn_id,
        outcome.status,
        outcome.text,
        finish_reason=outcome.finish_reason,
        prompt_tokens=result.prompt_tokens if result else None,
        completion_tokens=result.completion_tokens if result else None,
        time_to_first_token_s=result.time_to_first_token_s if result else None,
        total_s=result.total_s if result else None,
    )
    if outcome.message_ids:
        await runtime.store.link_messages(turn_id, outcome.message_ids)


@dataclass
class _Outcome:
    """How one answer went; filled in as it goes, recorded at the end whatever happened."""

    text: str = ""
    status: TurnStatus = TurnStatus.FAILED
    finish_reason: str = FinishReason.ERROR.value
    result: GenerationResult | None = None
    message_ids: tuple[int, ...] = ()
    cancel_reason: str | None = None
    shape: Callable[[str], str] = field(default=lambda text: text)  # applied to what is shown and stored


async def _stream_into(
    runtime: BotRuntime,
    conversation: Conversation,
    params: GenerationParams,
    renderer: AnswerRenderer,
    outcome: _Outcome,
) -> None:
    """Run the model and show its text as it grows; known failures and cancellation end in `outcome`."""
    try:
        async with contextlib.aclosing(runtime.model.stream(conversation, params)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    outcome.text += event.text
                    await renderer.update(outcome.shape(outcome.text))
                elif isinstance(event, GenerationResult):
                    outcome.result = event
    except asyncio.CancelledError as cancel:
        outcome.cancel_reason = str(cancel.args[0]) if cancel.args else CANCEL_BY_USER
        await _show_cancelled(outcome, renderer)
    except PromptTooLong:
        await _show_failure(outcome, renderer, texts.PROMPT_TOO_LONG)
    except ServiceStopped:
        await _show_failure(outcome, renderer, texts.NOT_READY)
    except ModelError as error:  # GenerationFailed, or a prompt the builder could not make safe
        log.warning("generation failed: %s", error)
        await _show_failure(outcome, renderer, texts.GENERATION_FAILED)
    else:
        await _show_result(outcome, renderer)


async def _show_result(outcome: _Outcome, renderer: AnswerRenderer) -> None:
    result = outcome.result
    if result is None:
        await _show_failure(outcome, renderer, texts.GENERATION_FAILED)
        return
    outcome.text = outcome.shape(result.text)
    if result.finish_reason is FinishReason.CANCELLED:  # the service was stopped under us
        outcome.cancel_reason = CANCEL_BY_SHUTDOWN
        await _show_cancelled(outcome, renderer)
        return
    if result.finish_reason is FinishReason.ERROR:
        await _show_failure(outcome, renderer, texts.GENERATION_FAILED)
        return
    outcome.status = TurnStatus.COMPLETE
    outcome.finish_reason = result.finish_reason.value
    outcome.message_ids = tuple(await renderer.finish(outcome.text.strip() or texts.EMPTY_ANSWER))


async def _show_failure(outcome: _Outcome, renderer: AnswerRenderer, apology: str) -> None:
    outcome.status = TurnStatus.FAILED
    outcome.finish_reason = FinishReason.ERROR.value
    outcome.message_ids = tuple(await renderer.fail(apology))


async def _show_cancelled(outcome: _Outcome, renderer: AnswerRenderer) -> None:
    """Show what was written so far and why it stopped; bounded, since shutdown waits for it."""
    outcome.status = TurnStatus.CANCELLED
    outcome.finish_reason = FinishReason.CANCELLED.value
    note = texts.CANCELLED_BY_SHUTDOWN if outcome.cancel_reason == CANCEL_BY_SHUTDOWN else texts.CANCELLED
    try:
        shown = await asyncio.wait_for(renderer.fail(note, partial_text=outcome.text), CLEANUP_TIMEOUT_S)
    except (asyncio.TimeoutError, TelegramError) as error:
        log.info("could not show that an answer was cancelled: %s", error)
        return
    outcome.message_ids = tuple(shown)


async def chat_generation_setup(
    runtime: BotRuntime, chat_id: int
) -> tuple[Preamble | None, GenerationParams]:
    """The preamble (mode) and generation settings for a chat: the bot's defaults, unless the chat chose
    its own with /mode and /settings (stored values are checked by `bot.chat_preferences`)."""
    modes = available_modes(runtime.modes, runtime.default_preamble)
    preferences = read_preferences(await runtime.store.chat_settings(chat_id), modes)
    preamble = chosen_preamble(preferences, modes, runtime.default_preamble)
    return preamble, generation_params(preferences, runtime.settings)


async def _send_apology(bot: Bot, target: ReplyTarget, text: str) -> None:
    await bot.send_message(
        target.chat_id,
        text,
        reply_parameters=reply_parameters(target),
        message_thread_id=target.message_thread_id,
    )


def reply_parameters(target: ReplyTarget) -> ReplyParameters | None:
    """Quote the message we answer (in groups), but still send if it was deleted meanwhile."""
    if target.reply_to_message_id is None:
        return None
    return ReplyParameters(message_id=target.reply_to_message_id, allow_sending_without_reply=True)
