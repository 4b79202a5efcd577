"""The text side of stopping: stop strings never reach a reader, multi-byte characters are never split."""

from __future__ import annotations

import itertools

import pytest
from transformers import AutoTokenizer

from model.stopping import NEW_USER_TURN, IncrementalDecoder, RowStopper, StopStringHoldback
from model.types import FinishReason


def _released(pieces: list[str]) -> tuple[list[str], StopStringHoldback]:
    holdback = StopStringHoldback()
    deltas = [holdback.push(piece) for piece in pieces]
    deltas.append(holdback.finish())
    return [d for d in deltas if d], holdback


@pytest.mark.parametrize(
    "pieces",
    [
        [" Hello", " there", "\n", "User", ":", " more"],
        [" Hello there\nUs", "er: more"],
        [" Hello", " there", "\n", "U", "s", "e", "r", ":"],
        [" Hello there", "\nUser:"],
    ],
)
def test_new_user_turn_is_cut_and_no_prefix_of_it_is_ever_released(pieces: list[str]) -> None:
    deltas, holdback = _released(pieces)
    shown_so_far = ""
    for delta in deltas:
        shown_so_far += delta
        assert "\n" not in shown_so_far
        assert not any(shown_so_far.endswith(NEW_USER_TURN[:n]) for n in range(1, len(NEW_USER_TURN) + 1))
    assert holdback.stopped
    assert holdback.reply == "Hello there"
    assert "".join(deltas) == holdback.reply


def test_text_that_only_looked_like_a_new_turn_is_released_once_it_diverges() -> None:
    holdback = StopStringHoldback()
    assert holdback.push(" a line") == "a line"
    assert holdback.push("\nUs") == ""
    assert holdback.push("ually fine") == "\nUsually fine"
    assert not holdback.stopped


def test_released_deltas_add_up_to_the_stripped_reply_for_every_split() -> None:
    text = "  First line.\n\nSecond line \nUser: ignored"
    for cut_a, cut_b in itertools.combinations(range(1, len(text)), 2):
        deltas, holdback = _released([text[:cut_a], text[cut_a:cut_b], text[cut_b:]])
        assert "".join(deltas) == holdback.reply == "First line.\n\nSecond line"


def test_literal_end_of_utterance_text_also_stops() -> None:
    deltas, holdback = _released([" Done", "<end_of", "_utterance>", " junk"])
    assert deltas == ["Done"]
    assert holdback.stopped


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def test_incremental_decoder_never_splits_a_multibyte_character(tokenizer) -> None:
    text = "Café 🐈 naïve ✓ done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.split())  # byte-level pieces: some characters span several tokens
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(token_id) for token_id in ids]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) + decoder.flush() == text


def test_row_stopper_reports_length_and_end_of_utterance(tokenizer) -> None:
    eou = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    words = tokenizer(" one two three", add_special_tokens=False)["input_ids"]
    by_length = RowStopper(tokenizer, stop_token_ids=[eou], max_new_tokens=2)
    for token_id in words:
        by_length.push(token_id)
    assert by_length.finish_reason is FinishReason.LENGTH
    assert by_length.completion_tokens == 2
    assert by_length.reply == tokenizer.decode(words[:2]).strip() != "one two three"

    by_eou = RowStopper(tokenizer, stop_token_ids=[eou], max_new_tokens=50)
    shown = "".join(by_eou.push(token_id) for token_id in [*words, eou])
    assert by_eou.finish_reason is FinishReason.END_OF_UTTERANCE
    assert shown == by_eou.reply == "one two three"
