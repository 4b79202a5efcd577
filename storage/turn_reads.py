"""The turn reads every message makes, as SQLAlchemy Core statements that fill `StoredTurn`s directly.

Each question reads its conversation's history, each request its own turns, each button press the turn
of the message pressed. Loaded through the ORM (`selectinload` of a turn's images and messages), each read was four
statements, and building, identity-mapping and then converting every row was most of the CPU a
request cost. Here a read is three statements built once and run with parameters (as in
`storage.turn_writes`): the turns, their messages and their images, each selected by the same
condition on the turns (no list of ids sent back), and the last two only when there are turns.

Like `storage.queries`, each takes an open session inside a transaction and never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, select
from sqlalchemy.orm import Session

from storage.schema import Image, Turn, TurnImage, TurnMessage
from storage.types import StoredImage, StoredTurn

TURNS: Table = Turn.__table__  # type: ignore[assignment]
TURN_IMAGES: Table = TurnImage.__table__  # type: ignore[assignment]
TURN_MESSAGES: Table = TurnMessage.__table__  # type: ignore[assignment]
IMAGES: Table = Image.__table__  # type: ignore[assignment]

_TURN_COLUMNS = (
    TURNS.c.id, TURNS.c.conversation_id, TURNS.c.position, TURNS.c.role, TURNS.c.text, TURNS.c.status,
    TURNS.c.finish_reason, TURNS.c.prompt_tokens, TURNS.c.completion_tokens,
    TURNS.c.time_to_first_token_s, TURNS.c.total_s, TURNS.c.created_at,
)
_IMAGE_COLUMNS = (
    IMAGES.c.id, IMAGES.c.sha256, IMAGES.c.data, IMAGES.c.mime_type, IMAGES.c.width, IMAGES.c.height,
    IMAGES.c.file_unique_id,
)


class TurnRead:
    """The turns meeting one condition (with bound parameters), in order, with images and messages."""

    def __init__(self, condition: ColumnElement[bool], *order_by: Any) -> None:
        self._turns: Select[Any] = select(*_TURN_COLUMNS).where(condition).order_by(*order_by)
        self._messages: Select[Any] = (
            select(TURN_MESSAGES.c.turn_id, TURN_MESSAGES.c.message_id)
            .join(TURNS, TURNS.c.id == TURN_MESSAGES.c.turn_id)
            .where(condition)
        )
        self._images: Select[Any] = (
            select(TURN_IMAGES.c.turn_id, *_IMAGE_COLUMNS)
            .join(TURNS, TURNS.c.id == TURN_IMAGES.c.turn_id)
            .join(IMAGES, IMAGES.c.id == TURN_IMAGES.c.image_id)
            .where(condition)
            .order_by(TURN_IMAGES.c.turn_id, TURN_IMAGES.c.position)
        )

    def __call__(self, session: Session, parameters: dict[str, Any]) -> list[StoredTurn]:
        rows = session.execute(self._turns, parameters).all()
        if not rows:
            return []
        messages: dict[int, list[int]] = defaultdict(list)
        for turn_id, message_id in session.execute(self._messages, parameters):
            messages[turn_id].append(message_id)
        images: dict[int, list[StoredImage]] = defaultdict(list)
        for turn_id, *image in session.execute(self._images, parameters):
            images[turn_id].append(StoredImage(*image))
        return [_stored_turn(row, images.get(row.id, ()), messages.get(row.id, ())) for row in rows]


def _stored_turn(row: Any, images: Sequence[StoredImage], message_ids: Sequence[int]) -> StoredTurn:
    return StoredTurn(
        id=row.id, conversation_id=row.conversation_id, position=row.position, role=row.role, text=row.text,
        status=row.status, images=tuple(images), message_ids=tuple(sorted(message_ids)),
        finish_reason=row.finish_reason, prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens, time_to_first_token_s=row.time_to_first_token_s,
        total_s=row.total_s, created_at=row.created_at,
    )


TURN_OF_MESSAGE = TurnRead(
    TURNS.c.id
    == select(TURN_MESSAGES.c.turn_id)
    .where(TURN_MESSAGES.c.chat_id == bindparam("p_chat_id"), TURN_MESSAGES.c.message_id == bindparam("p_message_id"))
    .scalar_subquery()
)
TURNS_OF_CONVERSATION = TurnRead(TURNS.c.conversation_id == bindparam("p_conversation_id"), TURNS.c.position)
TURNS_OF_REQUEST = TurnRead(
    TURNS.c.inbox_item_id == bindparam("p_request_id"), TURNS.c.conversation_id, TURNS.c.position
)
QUESTION_OF_REQUEST = TurnRead(
    (TURNS.c.inbox_item_id == bindparam("p_request_id")) & (TURNS.c.role == "user"), TURNS.c.position
)
