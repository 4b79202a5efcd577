"""Stored history → the model's Conversation: which turns the model gets to see, and in what shape.

The model sees user turns (images first, then text, as the canonical prompt format wants) and the
assistant answers that were actually given. Failed, cancelled, superseded and unfinished answers are
left out (an UNDELIVERED one until Telegram takes it), and so are user turns whose own content could
not be stored (a failed download). An image is decoded once: the picture the store made when it took
the question is used, for this answer and the conversation's next ones, while the store's
`PictureCache` holds it; otherwise the stored bytes are decoded (as the JPEG the store wrote, nothing
else) and then held.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PIL import Image

from model.types import Conversation, ImagePart, Part, Preamble, TextPart, Turn
from storage.images import open_stored
from storage.pictures import PictureCache
from storage.types import StoredImage, StoredTurn, TurnStatus

USER_STATUSES_SHOWN = frozenset({TurnStatus.COMPLETE, TurnStatus.PENDING})


def visible_turns(history: Iterable[StoredTurn]) -> list[StoredTurn]:
    """The stored turns the model should see, oldest first."""
    shown = []
    for turn in sorted(history, key=lambda t: t.position):
        if turn.role == "assistant" and turn.status is TurnStatus.COMPLETE and turn.text:
            shown.append(turn)
        elif turn.role == "user" and turn.status in USER_STATUSES_SHOWN:
            shown.append(turn)
    return shown


def open_image(stored: StoredImage, pictures: PictureCache | None = None) -> Image.Image:
    """The stored image's picture: the one held since it was decoded, else decoded now (and held)."""
    picture = pictures.get(stored.sha256) if pictures is not None else None
    if picture is None:
        picture = open_stored(stored.data)
        if pictures is not None:
            pictures.put(stored.sha256, picture)
    return picture


def model_turn(turn: StoredTurn, pictures: PictureCache | None = None) -> Turn:
    if turn.role == "assistant":
        return Turn("assistant", (TextPart(turn.text),))
    parts: list[Part] = [
        ImagePart(open_image(image, pictures), key=image.sha256) for image in turn.images
    ]
    if turn.text:
        parts.append(TextPart(turn.text))
    return Turn("user", tuple(parts))


def build_conversation(
    history: Sequence[StoredTurn], preamble: Preamble | None, pictures: PictureCache | None = None
) -> Conversation | None:
    """The Conversation ending at the newest visible user turn; None if there is no user turn to answer.

    May decode images (those `pictures` does not hold), so run it in the store's decode pool.
    """
    turns = visible_turns(history)
    while turns and turns[-1].role != "user":
        turns.pop()
    if not turns:
        return None
    return Conversation(turns=tuple(model_turn(turn, pictures) for turn in turns), preamble=preamble)
