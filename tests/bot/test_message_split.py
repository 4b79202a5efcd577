"""split_message: pieces fit Telegram's limit, end at natural boundaries, and lose nothing."""

from __future__ import annotations

import random

import pytest

from bot.message_split import TELEGRAM_TEXT_LIMIT, split_message, split_once, utf16_length


def assert_reassembles(text: str, pieces: list[str]) -> list[int]:
    """Check that `pieces` are `text` in order, with only whitespace left out between them.

    Returns, for each piece but the last, the index in `text` right after it (where it was cut).
    """
    position = 0
    cuts = []
    for piece in pieces:
        assert piece and piece == piece.strip()
        while position < len(text) and text[position].isspace():
            position += 1
        assert text.startswith(piece, position), f"piece does not continue the text at {position}"
        position += len(piece)
        cuts.append(position)
    assert text[position:].strip() == "", "text left over after the last piece"
    return cuts[:-1]


def test_short_text_is_one_message_without_outer_whitespace():
    assert split_message("  Hello there.\n") == ["Hello there."]


def test_empty_and_blank_texts_give_no_messages():
    assert split_message("") == []
    assert split_message(" \n\t \n") == []


def test_text_exactly_at_the_limit_is_not_split():
    text = "a" * TELEGRAM_TEXT_LIMIT
    assert split_message(text) == [text]


def test_paragraph_boundary_is_preferred_over_later_sentence_boundaries():
    first = "First paragraph sentence one. " * 20  # about 600 characters
    second = "Second paragraph goes on. " * 30
    text = first.strip() + "\n\n" + second.strip()
    pieces = split_message(text, limit=1000)
    assert pieces[0] == first.strip()
    assert_reassembles(text, pieces)


def test_sentence_boundary_is_used_when_no_paragraph_fits():
    text = "This is a sentence that ends here. " * 10
    pieces = split_message(text, limit=100)
    assert all(piece.endswith(".") for piece in pieces)
    assert all(len(piece) <= 100 for piece in pieces)
    assert_reassembles(text, pieces)


def test_sentence_cut_keeps_closing_quote_with_its_sentence():
    text = 'He said "stop here." ' * 8 + "tail"
    pieces = split_message(text, limit=60)
    assert pieces[0].endswith('here."')
    assert_reassembles(text, pieces)


def test_early_paragraph_break_is_skipped_for_a_sentence_near_the_limit():
    text = "Short.\n\n" + "A longer sentence follows here. " * 10
    pieces = split_message(text, limit=200)
    assert len(pieces[0]) > 100, "a tiny first message means the early paragraph break was taken"
    assert_reassembles(text, pieces)


def test_word_boundary_is_used_when_there_is_no_sentence_end():
    words = [f"word{i}" for i in range(300)]
    text = " ".join(words)
    pieces = split_message(text, limit=50)
    for piece in pieces:
        assert len(piece) <= 50
        assert all(token in words for token in piece.split(" ")), "a word was cut in half"
    assert_reassembles(text, pieces)


def test_text_without_whitespace_is_cut_hard_at_the_limit():
    text = "x" * 10_000
    pieces = split_message(text)
    assert [len(piece) for piece in pieces] == [4096, 4096, 1808]
    assert "".join(pieces) == text


def test_astral_characters_count_twice_towards_the_limit():
    text = "😀" * 3000  # 6000 UTF-16 code units
    pieces = split_message(text)
    assert all(utf16_length(piece) <= TELEGRAM_TEXT_LIMIT for piece in pieces)
    assert "".join(pieces) == text
    assert len(pieces) == 2


def test_split_once_reports_the_rest_so_callers_can_track_offsets():
    text = "One sentence here. Another one there. And a third."
    piece, rest = split_once(text, limit=40)
    assert piece == "One sentence here. Another one there."
    assert rest == "And a third."
    assert text[len(text) - len(rest):] == rest


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_message("text", limit=0)


def _random_text(rng: random.Random) -> str:
    vocabulary = [
        "the", "cat", "sat", "on", "a", "mat", "IDEFICS", "😀", "naïve",
        "x" * rng.randint(1, 40),
        ".", "!", "?", ",", "…", '"', ")",
    ]
    separators = [" ", " ", " ", "  ", "\n", "\n\n", "\n \n", "\t", "\u00a0", ". ", "! ", ".\n\n"]
    parts = []
    for _ in range(rng.randint(0, 600)):
        parts.append(rng.choice(vocabulary))
        parts.append(rng.choice(separators) if rng.random() < 0.8 else "")
    return "".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_split_into_fitting_pieces_that_reassemble_exactly(seed):
    rng = random.Random(seed)
    text = _random_text(rng)
    limit = rng.choice([1, 2, 7, 30, 100, 257, 1000])
    if limit == 1 and any(ord(char) > 0xFFFF for char in text):
        limit = 2  # an astral character alone takes two units
    pieces = split_message(text, limit=limit)
    assert all(1 <= utf16_length(piece) <= limit for piece in pieces)
    assert_reassembles(text, pieces)


@pytest.mark.parametrize("seed", range(20))
def test_random_texts_with_short_words_are_only_cut_at_whitespace(seed):
    rng = random.Random(1000 + seed)
    words = ["alpha", "beta.", "gamma!", "delta,", "😀😀", "epsilon"]
    separators = [" ", "\n", "\n\n", "  "]
    text = "".join(rng.choice(words) + rng.choice(separators) for _ in range(rng.randint(50, 500)))
    pieces = split_message(text, limit=rng.choice([20, 64, 300]))
    for cut in assert_reassembles(text, pieces):
        assert text[cut].isspace(), f"cut inside a word at {cut}: {text[cut - 10:cut + 10]!r}"
