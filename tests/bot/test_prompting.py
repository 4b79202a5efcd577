"""Stored history → model Conversation: what the model sees, in which order, with which image keys."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from bot.prompting import build_conversation
from model.types import ImagePart, Preamble, TextPart
from storage.images import normalise_image
from storage.types import StoredImage, StoredTurn, TurnStatus
from tests.untrusted_files import EPS_PAYLOAD


def stored_image(color: str) -> StoredImage:
    """An image as the store keeps it: normalised to JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    data = normalise_image(buffer.getvalue()).data
    return StoredImage(1, hashlib.sha256(data).hexdigest(), data, "image/jpeg", 8, 8)


def turn(position: int, role: str, text: str, status=TurnStatus.COMPLETE, images=()) -> StoredTurn:
    return StoredTurn(position, 1, position, role, text, status, tuple(images))


def test_user_turns_put_images_before_text_and_key_them_by_sha256():
    red = stored_image("red")
    conversation = build_conversation([turn(0, "user", "what is it?", images=[red])], None)
    [only] = conversation.turns
    image, text = only.parts
    assert isinstance(image, ImagePart) and image.key == red.sha256
    assert [abs(a - b) < 8 for a, b in zip(image.image.getpixel((0, 0)), (255, 0, 0))] == [True] * 3
    assert text == TextPart("what is it?")


def test_a_stored_image_that_is_not_what_the_store_writes_is_never_decoded(fake_ghostscript):
    forged = StoredImage(1, hashlib.sha256(EPS_PAYLOAD).hexdigest(), EPS_PAYLOAD, "image/jpeg", 16, 16)
    with pytest.raises(Exception):
        build_conversation([turn(0, "user", "what is it?", images=[forged])], None)
    assert not fake_ghostscript.was_run()


def test_failed_cancelled_superseded_pending_and_undelivered_answers_are_left_out():
    history = [
        turn(0, "user", "q1"),
        turn(1, "assistant", "superseded", TurnStatus.SUPERSEDED),
        turn(2, "assistant", "kept"),
        turn(3, "user", "q2"),
        turn(4, "assistant", "failed", TurnStatus.FAILED),
        turn(5, "user", "q3"),
        turn(6, "assistant", "cancelled", TurnStatus.CANCELLED),
        turn(7, "user", "q4 (its image could not be read)", TurnStatus.FAILED),
        turn(8, "user", "q5"),
        turn(9, "assistant", "nobody saw this", TurnStatus.UNDELIVERED),
        turn(10, "user", "q6"),
        turn(11, "assistant", "", TurnStatus.PENDING),
    ]
    conversation = build_conversation(history, None)
    shown = [(t.role, t.parts[-1].text) for t in conversation.turns]
    assert shown == [
        ("user", "q1"), ("assistant", "kept"), ("user", "q2"), ("user", "q3"), ("user", "q5"), ("user", "q6"),
    ]


def test_conversation_ends_at_the_newest_user_turn_and_keeps_the_preamble():
    preamble = Preamble("test", "Be helpful.")
    history = [turn(0, "user", "q1"), turn(1, "assistant", "a1")]
    conversation = build_conversation(history, preamble)
    assert [t.role for t in conversation.turns] == ["user"]
    assert conversation.preamble is preamble


def test_nothing_to_answer_without_a_user_turn():
    assert build_conversation([], None) is None
    assert build_conversation([turn(0, "user", "q", TurnStatus.FAILED)], None) is None
