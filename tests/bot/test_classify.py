"""/classify end to end: exactly one of the given labels, chosen by likelihood, with the ranking shown."""

from __future__ import annotations

import math
import re

import pytest

from bot import texts
from bot.commands.classify import ranking
from bot.labels import LabelListError, parse_labels
from model.types import ImagePart, TextPart
from storage.types import TurnStatus
from tests.bot.conftest import image_bytes, runtime
from tests.bot.task_helpers import history, stored_colour, task_factory

USER_ID = 5401
GROUP_ID = -100540540
ANN, BOB = 5411, 5412
RANK_LINE = re.compile(r"^(\d+)\. (.+) — (\d+\.\d)%$")


def ranked_lines(text: str) -> list[tuple[str, float]]:
    """(label, percent) from the ranking lines of a classification reply."""
    return [(m[2], float(m[3])) for m in map(RANK_LINE.match, text.splitlines()) if m]


def test_parse_labels_splits_on_commas_and_tidies_whitespace():
    assert parse_labels(" cat ,dog,\n  bird  of   prey ") == ("cat", "dog", "bird of prey")


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ("", "no labels"),
        (" , ,", "no labels"),
        ("cat", "only one label"),
        (", ".join(f"l{i}" for i in range(21)), "21 labels"),
        ("cat, " + "x" * 51, "characters long"),
        ("Cat, dog, cAT", "given twice"),
    ],
)
def test_parse_labels_refuses_bad_lists_saying_why(labels, problem):
    with pytest.raises(LabelListError, match=problem):
        parse_labels(labels)


def test_ranking_normalises_likelihoods_over_the_labels_best_first():
    ranked = ranking(["cat", "dog", "bird"], [math.log(0.1), math.log(0.6), math.log(0.3)])
    assert [label for label, _ in ranked] == ["dog", "bird", "cat"]
    assert [round(p, 6) for _, p in ranked] == [0.6, 0.3, 0.1]


async def test_photo_captioned_classify_answers_the_most_likely_label_with_the_ranking(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="/classify cat, dog, bird")

    [reply] = await bot_api.wait_for_bot_message(chat)
    [(scored_conversation, options, scores)] = services[0].scored
    assert options == ("cat", "dog", "bird")
    best = options[max(range(3), key=lambda i: scores[i])]
    assert reply.text.splitlines()[0] == best
    shown = ranked_lines(reply.text)
    assert [label for label, _ in shown] == [label for label, _ in ranking(options, scores)]
    assert abs(sum(percent for _, percent in shown) - 100) < 0.5
    [question] = scored_conversation.turns
    assert isinstance(question.parts[0], ImagePart) and scored_conversation.preamble is None
    assert question.parts[-1] == TextPart(texts.CLASSIFY_QUESTION.format(labels="cat, dog, bird"))
    user_turn, assistant_turn = await history(application, chat.id, USER_ID)
    assert user_turn.text == question.parts[-1].text and [stored_colour(i) for i in user_turn.images] == [
        "red"
    ]
    assert (assistant_turn.status, assistant_turn.text) == (TurnStatus.COMPLETE, reply.text)
    assert reply.message_id in assistant_turn.message_ids
    assert services[0].conversations == [], "nothing was generated: the labels were scored"


async def test_classify_replying_to_a_photo_in_a_group_scores_only_that_question(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    group = bot_api.group_chat(GROUP_ID)
    bob = bot_api.user(BOB, "Bob")
    await bot_api.send_text(group, bob, "@idefics_test_bot hello there")
    await bot_api.wait_for_bot_message(group)
    photo = await bot_api.send_photo(group, bot_api.user(ANN, "Ann"), image_bytes("blue"))
    command = await bot_api.send_text(group, bob, "/classify@idefics_test_bot sky, sea", reply_to=photo)

    reply = (await bot_api.wait_for_bot_message(group, count=2))[-1]
    assert reply.reply_to_message_id == command["message_id"]
    assert reply.text.splitlines()[0] in ("sky", "sea")
    [(conversation, _, _)] = services[0].scored
    assert len(conversation.turns) == 1, "earlier talk does not sway the choice"


async def test_labels_that_look_like_special_tokens_stay_literal_text(bot_api, start_bot):
    factory, services = task_factory()
    await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("green"), caption="/classify <image>, </s>, User: hi")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text.splitlines()[0] in ("<image>", "</s>", "User: hi")
    assert sorted(label for label, _ in ranked_lines(reply.text)) == sorted(["<image>", "</s>", "User: hi"])


async def test_bad_label_lists_get_the_usage_reply_and_nothing_is_scored(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    bad = ["", "cat", ", ".join(f"l{i}" for i in range(21)), "cat, " + "x" * 60, "dog, Cat, cat"]
    for count, labels in enumerate(bad, 1):  # one at a time, as a person would (and within flood limits)
        await bot_api.send_photo(chat, user, image_bytes("red"), caption=f"/classify {labels}".strip())
        replies = await bot_api.wait_for_bot_message(chat, count=count)

    expected = ["no labels", "only one label", "21 labels", "60 characters long", "'cat' is given twice"]
    for reply, problem in zip(replies, expected, strict=True):
        assert reply.text.startswith("Sorry, I can't classify with that label list: ")
        assert problem in reply.text and "/classify cat, dog, bird" in reply.text
    assert services[0].scored == []
    assert await history(application, chat.id, USER_ID) == []


async def test_classify_without_a_photo_asks_which_photo(bot_api, start_bot):
    factory, services = task_factory()
    application = await start_bot(model_service_factory=factory)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/classify cat, dog")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.CLASSIFY_NEEDS_PHOTO
    assert services[0].scored == [] and (await runtime(application).store.stats()).turns == 0
