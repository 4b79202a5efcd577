"""Cutting a long answer into Telegram-sized messages at the most natural place available.

Telegram rejects a text longer than 4096 characters, so a long answer has to continue in further
messages. A reader should see each message end where a person would pause: at a paragraph if one
is close enough to the limit, else at a line break, else after a sentence, else between words, and
only as a last resort in the middle of a word. Nothing is lost or repeated: the pieces, put back
together with the whitespace that was dropped at each cut, give the original text.

Length is counted in UTF-16 code units, the unit Telegram uses for its limits and entity offsets;
for text without astral characters (emoji and the like) that equals `len()`, and it is never less,
so a piece never exceeds `limit` by either count.
"""

from __future__ import annotations

import re

TELEGRAM_TEXT_LIMIT = 4096

# A natural boundary is only used if the piece before it fills at least this share of the limit;
# otherwise the next, finer kind of boundary is tried, so we never send a stub of a few words
# just because a paragraph happened to end early.
MIN_FILL_FOR_NATURAL_BOUNDARY = 0.5

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_LINE_BREAK = re.compile(r"\n\s*")
# The cut goes after the punctuation and any closing quotes or brackets that follow it.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’»)\]]*(\s+)")
_WORD_GAP = re.compile(r"\s+")


def utf16_length(text: str) -> int:
    """The length Telegram counts: astral characters take two UTF-16 code units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _longest_fitting_prefix(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 code units."""
    if len(text) <= limit and utf16_length(text) <= limit:
        return len(text)
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def _last_gap_start(pattern: re.Pattern[str], window: str, fit: int, minimum: int) -> int | None:
    """Start of the last gap matched by `pattern` leaving a piece of length in [minimum, fit]."""
    best = None
    for match in pattern.finditer(window):
        gap_start = match.start(match.lastindex or 0)
        if gap_start > fit:
            break
        if gap_start >= minimum and window[:gap_start].strip():
            best = gap_start
    return best


def _cut_position(text: str, fit: int, limit: int) -> tuple[int, int]:
    """Where the first piece ends and where the rest starts (the gap between is whitespace)."""
    # One character past the fitting prefix is included so a gap right at the limit is found.
    window = text[: fit + 1]
    minimum = max(1, int(limit * MIN_FILL_FOR_NATURAL_BOUNDARY))
    for pattern, least in (
        (_PARAGRAPH_BREAK, minimum),
        (_LINE_BREAK, minimum),
        (_SENTENCE_END, minimum),
        (_WORD_GAP, 1),
    ):
        gap_start = _last_gap_start(pattern, window, fit, least)
        if gap_start is not None:
            return gap_start, gap_start
    return fit, fit


def split_once(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> tuple[str, str]:
    """Split off the first piece of `text` that fits in `limit`; return (piece, rest).

    Both are stripped of the whitespace at the cut; `rest` is "" when everything fit. Callers that
    need to know how much of `text` the piece consumed can use `len(text) - len(rest)`.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    stripped = text.lstrip()
    fit = _longest_fitting_prefix(stripped, limit)
    if fit == len(stripped):
        return stripped.rstrip(), ""
    if fit == 0:
        # Only possible when limit is 1 and the first character is astral: it cannot fit at all.
        raise ValueError("limit is too small for a single character of this text")
    piece_end, rest_start = _cut_position(stripped, fit, limit)
    return stripped[:piece_end].rstrip(), stripped[rest_start:].lstrip()


def split_message(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split `text` into non-empty pieces of at most `limit` UTF-16 units, at natural boundaries.

    Whitespace at the cuts and at both ends is dropped; an empty or blank text gives [].
    """
    pieces: list[str] = []
    rest = text
    while rest.strip():
        piece, rest = split_once(rest, limit)
        pieces.append(piece)
    return pieces
