"""/classify cat, dog, bird: which of the person's labels fits a photo, chosen by likelihood, not by parsing.

The question listing the labels is stored as a user turn with the photo; each label is then scored by
the model's likelihood of writing exactly it as the answer (`ModelBackend.score_options`), the scores
are normalised over the labels into percentages, and the ranking is sent and stored as the answer.
The scoring sees only this question (no history, no preamble), so earlier talk cannot sway the choice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from bot import texts
from bot.answering import assistant_turn, store_question
from bot.apologies import apology_for
from bot.incoming import TaskCall
from bot.labels import MAX_LABELS, LabelListError, parse_labels
from bot.prompting import build_conversation
from bot.outbox import Outbox
from bot.runtime import BotRuntime
from bot.tasks import reply_to_call
from model.errors import ModelError

log = logging.getLogger(__name__)


def ranking(labels: Sequence[str], log_probs: Sequence[float]) -> list[tuple[str, float]]:
    """(label, probability) best first; probabilities are the softmax of the log-likelihoods."""
    top = max(log_probs)
    weights = [math.exp(value - top) for value in log_probs]
    total = sum(weights)
    ranked = [(label, weight / total) for label, weight in zip(labels, weights, strict=True)]
    return sorted(ranked, key=lambda pair: pair[1], reverse=True)


def result_text(ranked: Sequence[tuple[str, float]]) -> str:
    lines = "\n".join(
        texts.CLASSIFY_RANK_LINE.format(place=place, label=label, percent=100 * probability)
        for place, (label, probability) in enumerate(ranked, 1)
    )
    return texts.CLASSIFY_RESULT.format(label=ranked[0][0], ranking=lines)


async def classify_task(runtime: BotRuntime, outbox: Outbox, call: TaskCall) -> None:
    """Check the labels and the photo, then score, answer and record."""
    try:
        labels = parse_labels(call.argument)
    except LabelListError as problem:
        await reply_to_call(outbox, call, texts.CLASSIFY_USAGE.format(problem=problem, max_labels=MAX_LABELS))
        return
    if not call.images:
        await reply_to_call(outbox, call, texts.CLASSIFY_NEEDS_PHOTO)
        return
    incoming = call.question(texts.CLASSIFY_QUESTION.format(labels=", ".join(labels)))
    conversation_id = await store_question(runtime, outbox, incoming)
    if conversation_id is None:
        return
    question = [turn for turn in await runtime.store.history(conversation_id) if turn.role == "user"][-1]
    conversation = await runtime.store.decode_pool.run(build_conversation, [question], None)
    async with assistant_turn(runtime, outbox, conversation_id) as outcome:
        try:
            log_probs = await runtime.model.score_options(conversation, labels)
        except ModelError as error:
            log.warning("classification failed: %s: %s", type(error).__name__, error)
            outcome.fail(apology_for(error), error)
        else:
            outcome.complete(result_text(ranking(labels, log_probs)))
        shown, outcome.delivered = await outbox.finish(
            outbox.delivery(incoming.target), outcome.message(), turn_id=outcome.turn_id
        )
        outcome.message_ids = tuple(shown)
