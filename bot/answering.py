"""The path of one answer: store the question, rebuild the conversation, stream the answer, record it.

`answer_message` stores a person's question as a user turn with its images; `generate_answer` writes
the answer to a conversation's newest question: the model's text is shown as it grows
(`bot.previews`), the final text is delivered (`bot.outbox`, `bot.delivery`) and recorded as an
assistant turn linked to its messages (`assistant_turn`, which /classify shares, and which counts every
answer in the bot's metrics). While every model server is overloaded the growing answer says so and that
it is trying again (`texts.MODEL_BUSY_RETRYING`); the answer then replaces the note. Every step that can
go wrong for a known reason ends in a short, specific apology (`bot.apologies`) and a stored status, and
the person's words are always kept; only unknown errors escape, to be logged by the caller. Work for a
stored request is done again after a restart, so both steps are tied to the request: its question is
stored once, and its answers are found again (`Store.turns_for_request`). An answer is COMPLETE only
once Telegram took it, UNDELIVERED until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from bot import texts
from bot.answer_keyboard import keyboard
from bot.apologies import apology_for
from bot.chat_preferences import available_modes, chosen_preamble, generation_params, read_preferences
from bot.conversation_queue import CANCEL_BY_SHUTDOWN, CANCEL_BY_USER
from bot.delivery import Delivery
from bot.downloads import fetch_image
from bot.errors import ImageDownloadFailed, ImageTooLarge
from bot.incoming import IncomingMessage, ReplyTarget
from bot.outbox import Outbox
from bot.previews import AnswerPreview, show_typing
from bot.prompting import build_conversation
from bot.runtime import BotRuntime
from model.backend import ModelBackend
from model.errors import GenerationFailed, ModelError
from model.types import (Busy, Conversation, FinishReason, GenerationParams, GenerationResult, Preamble,
                         TextDelta)
from storage.errors import ImageRejected, StorageError
from storage.images import NormalisedImage
from storage.types import AskedQuestion, ImageInput, StoredTurn, TurnStatus

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AnswerOptions:
    """How a task wants its answer written; the defaults are a plain answer, the chat's way."""

    params: GenerationParams | None = None  # instead of the chat's /settings (a story samples)
    mode: str | None = None  # a mode (preamble) to use instead of the chat's, when it is installed
    shape_text: Callable[[str], str] | None = None  # trims what the model wrote, shown and stored alike
    can_regenerate: bool = True  # False for task answers: their instruction and sampling aren't stored


PLAIN_ANSWER = AnswerOptions()


async def answer_message(
    runtime: BotRuntime,
    outbox: Outbox,
    incoming: IncomingMessage,
    options: AnswerOptions = PLAIN_ANSWER,
    *,
    ends_the_work: bool = False,
) -> None:
    """Store the message as a user turn, then answer it (or apologise for what went wrong).
    "typing…" shows at once, while the image is still being fetched. `ends_the_work`: nothing
    follows the answer in the request's work (see `generate_answer`)."""
    delivery = _answer_delivery(runtime, outbox, incoming.target)
    typing = asyncio.create_task(show_typing(delivery), name="typing-on-receipt")
    try:
        question = await _store_question(runtime, outbox, incoming, open_answer=True)
        if question is not None:
            await generate_answer(
                runtime, outbox, question.conversation_id, incoming.target, options,
                delivery=delivery, history=question.history, ends_the_work=ends_the_work, asked=question.asked,
            )
    finally:
        if not typing.done():
            typing.cancel()
        await asyncio.wait([typing])


async def store_question(runtime: BotRuntime, outbox: Outbox, incoming: IncomingMessage) -> int | None:
    """Store the message as a user turn with its images; its conversation's id, or None (and an
    apology sent, the words kept as a FAILED turn) when an image could not be had. A question the
    request stored before (a restart interrupted its answer) is not stored or downloaded again."""
    question = await _store_question(runtime, outbox, incoming)
    return None if question is None else question.conversation_id


@dataclass(frozen=True)
class _StoredQuestion:
    conversation_id: int
    history: list[StoredTurn] | None = None  # the conversation with the question, when it is known
    asked: AskedQuestion | None = None  # the question with its answer's turn opened (`Store.ask`)


async def _store_question(
    runtime: BotRuntime, outbox: Outbox, incoming: IncomingMessage, *, open_answer: bool = False
) -> _StoredQuestion | None:
    """`store_question`, also handing on the conversation's history when it read it anyway. The
    conversation (and its history) and the images are fetched at the same time. `open_answer`: the
    answer follows at once, so a question without images is stored with its answer's turn opened,
    all in one transaction (`Store.ask`)."""
    store = runtime.store
    if outbox.request_id is not None:
        turns = outbox.request_turns
        if turns is None:
            turns = await store.turns_for_request(outbox.request_id)
        earlier = [turn for turn in turns if turn.role == "user"]
        if earlier:
            done = earlier[0].status is TurnStatus.COMPLETE
            return _StoredQuestion(earlier[0].conversation_id) if done else None
    if open_answer and not incoming.images:
        asked = await store.ask(
            incoming.user, incoming.chat, incoming.text, message_ids=incoming.message_ids,
            inbox_item_id=outbox.request_id,
        )
        return _StoredQuestion(asked.conversation_id, list(asked.history), asked)

    async def conversation_so_far() -> tuple[int, list[StoredTurn]]:
        conversation, history = await store.conversation_so_far(incoming.user, incoming.chat)
        return conversation.id, history

    async def images() -> tuple[list[ImageInput], list[NormalisedImage]]:
        limit = runtime.settings.max_image_bytes
        fetched = list(await asyncio.gather(
            *(fetch_image(outbox.bot, store, source, limit) for source in incoming.images)
        ))
        return fetched, await store.normalise(fetched)

    (conversation_id, history), fetched = await asyncio.gather(
        conversation_so_far(), images(), return_exceptions=True
    )
    if isinstance(conversation_id, BaseException):
        raise conversation_id
    turn = dict(message_ids=incoming.message_ids, inbox_item_id=outbox.request_id)
    try:
        if isinstance(fetched, BaseException):
            raise fetched
        question = await store.add_user_turn(
            conversation_id, incoming.text, fetched[0], normalised=fetched[1], **turn
        )
    except (ImageTooLarge, ImageDownloadFailed, ImageRejected) as problem:
        log.info("could not take the image of a question in chat %s: %s", incoming.chat.id, problem)
        # Keep the person's words even though their image is missing; FAILED keeps it out of prompts.
        await store.add_user_turn(conversation_id, incoming.text, (), status=TurnStatus.FAILED, **turn)
        await outbox.send(incoming.target, apology_for(problem))
        return None
    # This process holds the conversation: nothing else was written to it meanwhile.
    return _StoredQuestion(conversation_id, [*history, question])


async def generate_answer(
    runtime: BotRuntime,
    outbox: Outbox,
    conversation_id: int,
    target: ReplyTarget,
    options: AnswerOptions = PLAIN_ANSWER,
    *,
    delivery: Delivery | None = None,
    history: list[StoredTurn] | None = None,
    ends_the_work: bool = False,
    asked: AskedQuestion | None = None,
) -> bool:
    """Answer the newest user turn of a conversation; False if there was nothing to answer.
    `delivery`: the answer's way into the chat, if one was made for it already (to show "typing…");
    `history`: the conversation's turns, if just read; `ends_the_work`: nothing follows the answer
    in the request's work, so the answer's close also marks the request done (`assistant_turn`);
    `asked`: the question as `Store.ask` stored it, with the answer's turn opened and the chat's
    settings read in the same transaction."""
    store = runtime.store
    if asked is not None:
        history = list(asked.history)
    if history is None:
        history = await store.history(conversation_id)
    if any(turn.images for turn in history):  # decoding is CPU work: off the loop
        conversation = await store.decode_pool.run(build_conversation, history, None, store.pictures)
    else:
        conversation = build_conversation(history, None, store.pictures)
    if conversation is None:
        if asked is not None:  # nothing to answer after all: the turn opened for it must not stay pending
            await store.close_assistant_turn(asked.answer.id, TurnStatus.FAILED, finish_reason=FinishReason.ERROR.value)
        return False
    if asked is None:  # neither waits for the other: the model starts once both are in
        (preamble, params), turn = await asyncio.gather(
            _generation_setup(runtime, target.chat_id, options),
            store.open_assistant_turn(conversation_id, inbox_item_id=outbox.request_id),
        )
    else:
        (preamble, params), turn = _chosen_setup(runtime, asked.chat_settings, options), asked.answer
    conversation = replace(conversation, preamble=preamble)
    delivery = delivery or _answer_delivery(runtime, outbox, target)
    async with assistant_turn(
        runtime, outbox, conversation_id, delivery, opened=turn, ends_the_work=ends_the_work
    ) as outcome:
        async with AnswerPreview(delivery) as preview:
            shape = options.shape_text or _as_written
            await _write(runtime.model, conversation, params, shape, preview, outcome)
            await preview.close()
        await _deliver(runtime, outbox, delivery, outcome, options)
    if outcome.cancel_reason is not None:
        raise asyncio.CancelledError(outcome.cancel_reason)
    return True


@dataclass
class AnswerOutcome:
    """How one answer went: filled in as it goes, recorded at the end whatever happened."""

    text: str = ""  # what the answer says (so far), as shown and as stored
    status: TurnStatus = TurnStatus.FAILED
    finish_reason: str | None = FinishReason.ERROR.value
    result: GenerationResult | None = None
    note: str = ""  # said after the text when the answer did not complete: an apology, "Stopped."
    cancel_reason: str | None = None
    message_ids: tuple[int, ...] = ()
    error: BaseException | None = None  # why it failed, when it did
    busy_waits: int = 0  # waits while every model server was overloaded
    turn_id: int | None = None
    delivered: bool = False  # Telegram took the final text: only then is a complete answer COMPLETE
    links: set[asyncio.Future[None]] = field(default_factory=set)  # messages being linked to the turn
    linked_early: bool = False  # a message was linked to the turn while the answer grew

    def complete(self, text: str, result: GenerationResult | None = None) -> None:
        self.text, self.status, self.result = text, TurnStatus.COMPLETE, result
        self.finish_reason = result.finish_reason.value if result else None

    def fail(self, apology: str, error: BaseException | None = None) -> None:
        self.status, self.finish_reason, self.note = TurnStatus.FAILED, FinishReason.ERROR.value, apology
        self.error = error

    def cancel(self, reason: str) -> None:
        self.status, self.finish_reason = TurnStatus.CANCELLED, FinishReason.CANCELLED.value
        self.cancel_reason = reason
        self.note = texts.CANCELLED_BY_SHUTDOWN if reason == CANCEL_BY_SHUTDOWN else texts.CANCELLED

    def recorded_status(self) -> TurnStatus:
        """The status the turn is stored with: a complete answer nobody saw is UNDELIVERED."""
        if self.status is TurnStatus.COMPLETE and not self.delivered:
            return TurnStatus.UNDELIVERED
        return self.status

    def message(self) -> str:
        """What the person reads: the answer, or what was written so far followed by the note."""
        if self.status is TurnStatus.COMPLETE:
            return self.text.strip() or texts.EMPTY_ANSWER
        partial = self.text.rstrip()
        return f"{partial}\n\n{self.note}" if partial.strip() else self.note


@contextlib.asynccontextmanager
async def assistant_turn(
    runtime: BotRuntime,
    outbox: Outbox,
    conversation_id: int,
    delivery: Delivery | None = None,
    *,
    opened: StoredTurn | None = None,
    ends_the_work: bool = False,
) -> AsyncIterator[AnswerOutcome]:
    """Open the answer's turn (unless `opened` already); whatever happens inside, record how it
    ended, even when cancelled. The messages `delivery` creates are linked to the turn as they appear.
    `ends_the_work`: the request's work ends with this answer, so when the block ended without a
    cancel or an exception and no reply waits for Telegram, its close also marks the request done
    (`Outbox.done`): one transaction, and the request is never done without its answer recorded."""
    turn = opened or await runtime.store.open_assistant_turn(conversation_id, inbox_item_id=outbox.request_id)
    outcome = AnswerOutcome(turn_id=turn.id)
    if delivery is not None:

        def link(message_id: int) -> None:
            outcome.linked_early = True
            linking = asyncio.ensure_future(_link_preview(runtime, turn.id, message_id))
            outcome.links.add(linking)
            linking.add_done_callback(outcome.links.discard)

        delivery.on_new_message = link
    ended = False
    try:
        yield outcome
        ended = True
    except asyncio.CancelledError:  # cancelled while delivering: a finished answer stays finished
        if outcome.status is not TurnStatus.COMPLETE:
            outcome.status, outcome.finish_reason = TurnStatus.CANCELLED, FinishReason.CANCELLED.value
        raise
    finally:  # also after an unexpected error: the turn must not stay pending
        runtime.metrics.answer_finished(outcome.recorded_status(), outcome.error, outcome.result, outcome.busy_waits)
        finishing = ends_the_work and ended and outcome.cancel_reason is None
        recording = asyncio.ensure_future(_record(runtime, turn.id, outcome, outbox if finishing else None))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:  # a cancel arriving meanwhile (shutdown) waits for the write
            await recording
            raise


async def _link_preview(runtime: BotRuntime, turn_id: int, message_id: int) -> None:
    """A restart must find the preview an interrupted answer left: link it as soon as it exists."""
    try:
        await runtime.store.link_messages(turn_id, [message_id])
    except StorageError as error:  # only the clean-up after a crash would miss it
        log.warning("could not link message %s to answer %s: %s", message_id, turn_id, error)


async def _record(runtime: BotRuntime, turn_id: int, outcome: AnswerOutcome, finishing: Outbox | None) -> None:
    """Close the turn; with `finishing`, also mark its request done unless a reply waits for Telegram."""
    if outcome.links:
        await asyncio.wait(list(outcome.links))
    result = outcome.result
    request_id = None if finishing is None or finishing.postponed else finishing.request_id
    await runtime.store.close_assistant_turn(
        turn_id,
        outcome.recorded_status(),
        outcome.text,
        finish_reason=outcome.finish_reason,
        prompt_tokens=result.prompt_tokens if result else None,
        completion_tokens=result.completion_tokens if result else None,
        time_to_first_token_s=result.time_to_first_token_s if result else None,
        total_s=result.total_s if result else None,
        message_ids=outcome.message_ids,
        replacing_links=outcome.linked_early,
        finishes_request=request_id,
    )
    if request_id is not None and finishing is not None:
        finishing.done = True


async def _write(
    model: ModelBackend,
    conversation: Conversation,
    params: GenerationParams,
    shape: Callable[[str], str],
    preview: AnswerPreview,
    outcome: AnswerOutcome,
) -> None:
    """Run the model and show its text as it grows; known failures and cancellation end in `outcome`."""
    written = ""
    try:
        result: GenerationResult | None = None
        async with contextlib.aclosing(model.stream(conversation, params)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    written += event.text
                    outcome.text = shape(written)
                    preview.update(outcome.text)
                elif isinstance(event, Busy):  # only before any text: the note is never mixed into it
                    outcome.busy_waits += 1
                    preview.update(texts.MODEL_BUSY_RETRYING.format(seconds=math.ceil(event.retry_in_s)))
                elif isinstance(event, GenerationResult):
                    result = event
        if result is None or result.finish_reason is FinishReason.ERROR:
            raise GenerationFailed(f"the model's stream ended without an answer ({result!r})")
    except asyncio.CancelledError as cancel:
        outcome.cancel(str(cancel.args[0]) if cancel.args else CANCEL_BY_USER)
    except ModelError as error:
        log.warning("answer failed: %s: %s", type(error).__name__, error)
        outcome.fail(apology_for(error), error)
    else:
        outcome.text = shape(result.text)
        if result.finish_reason is FinishReason.CANCELLED:  # the service was stopped under us
            outcome.cancel(CANCEL_BY_SHUTDOWN)
        else:
            outcome.complete(outcome.text, result)


async def _deliver(
    runtime: BotRuntime, outbox: Outbox, delivery: Delivery, outcome: AnswerOutcome, options: AnswerOptions
) -> None:
    """Send what the person reads; after a cancel only briefly, since shutdown waits for it."""
    if outcome.status is TurnStatus.COMPLETE:
        markup = "answer" if options.can_regenerate else "task"  # Regenerate / New conversation
        try:
            shown, outcome.delivered = await outbox.finish(
                delivery, outcome.message(), markup, outcome.turn_id
            )
        except asyncio.CancelledError:  # shutdown mid-delivery: what arrived counts
            outcome.message_ids = tuple(delivery.message_ids)
            outcome.delivered = not delivery.unsent_text(outcome.message()).strip()
            raise
    elif outcome.cancel_reason is None:
        shown, _ = await outbox.finish(delivery, outcome.message())
    else:
        note_mode = runtime.settings.interrupted_answers == "note"
        if outcome.cancel_reason == CANCEL_BY_SHUTDOWN:
            outcome.note = texts.CANCELLED_BY_SHUTDOWN_NOTE if note_mode else texts.CANCELLED_BY_SHUTDOWN
        markup = keyboard("retry") if note_mode and outcome.cancel_reason == CANCEL_BY_SHUTDOWN else None
        try:
            shown = await asyncio.wait_for(delivery.deliver(outcome.message(), markup), CLEANUP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.info("could not show in time that an answer in chat %s was cancelled", delivery.chat_id)
            return
    outcome.message_ids = tuple(shown)


async def _generation_setup(
    runtime: BotRuntime, chat_id: int, options: AnswerOptions
) -> tuple[Preamble | None, GenerationParams]:
    """The preamble (mode) and generation settings: the task's, else the chat's own choices made
    with /mode and /settings (checked by `bot.chat_preferences`), else the bot's defaults."""
    return _chosen_setup(runtime, await runtime.store.chat_settings(chat_id), options)


def _chosen_setup(
    runtime: BotRuntime, chat_settings: dict, options: AnswerOptions
) -> tuple[Preamble | None, GenerationParams]:
    """`_generation_setup` from the chat's stored settings."""
    modes = available_modes(runtime.modes, runtime.default_preamble)
    preferences = read_preferences(chat_settings, modes)
    preamble = chosen_preamble(preferences, modes, runtime.default_preamble)
    if options.mode:
        preamble = runtime.modes.get(options.mode, preamble)
    return preamble, options.params or generation_params(preferences, runtime.settings)


def _as_written(text: str) -> str:
    return text


def _answer_delivery(runtime: BotRuntime, outbox: Outbox, target: ReplyTarget) -> Delivery:
    return outbox.delivery(target, min_interval_s=runtime.settings.stream_edit_interval_s)
