"""The writes every question and answer makes, each in as few statements as the database allows.

These run for every message, so they are SQLAlchemy Core statements rather than ORM units of work:
each ORM load or flush is several statements and much Python around each, and all of that is time
the single SQLite writer holds its lock. What they do is what `storage.queries` did with the ORM:

- a new last turn: the conversation is marked active and locked (on PostgreSQL the UPDATE takes
  the row lock SELECT … FOR UPDATE took) before its next position is counted, in the INSERT itself;
- messages linked to a turn: one upsert moves a message already linked to another turn to this one.

Like `storage.queries`, each takes an open session inside a transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.errors import NotFound
from storage.schema import Conversation, Turn, TurnMessage, utc_now
from storage.types import StoredImage, StoredTurn, TurnStatus

CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]
TURNS: Table = Turn.__table__  # type: ignore[assignment]
TURN_MESSAGES: Table = TurnMessage.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NewTurn:
    """What `append_turn_row` wrote."""

    id: int
    conversation_id: int
    chat_id: int
    position: int
    created_at: datetime
    role: str
    status: TurnStatus
    text: str

    def stored(self, *, images: tuple[StoredImage, ...] = (), message_ids: tuple[int, ...] = ()) -> StoredTurn:
        """The turn as the store hands turns out, with the images and messages linked to it."""
        return StoredTurn(
            id=self.id, conversation_id=self.conversation_id, position=self.position, role=self.role,
            text=self.text, status=self.status, images=images, message_ids=message_ids,
            created_at=self.created_at,
        )


def upsert(session: Session, table: Table) -> Any:
    """INSERT … ON CONFLICT for this session's database (SQLite and PostgreSQL both have it)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# Built once, run with parameters: building a statement and its cache key costs more than running it.
_MARK_ACTIVE = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("p_conversation_id"))
    .values(last_activity_at=bindparam("p_now", type_=CONVERSATIONS.c.last_activity_at.type))
    .returning(CONVERSATIONS.c.chat_id)
)
_NEXT_POSITION = (
    select(func.coalesce(func.max(TURNS.c.position) + 1, 0))
    .where(TURNS.c.conversation_id == bindparam("p_conversation_id"))
    .scalar_subquery()
)
_APPEND_TURN = (
    TURNS.insert()
    .values(
        conversation_id=bindparam("p_conversation_id"), position=_NEXT_POSITION, role=bindparam("p_role"),
        text=bindparam("p_text"), status=bindparam("p_status", type_=TURNS.c.status.type),
        created_at=bindparam("p_now", type_=TURNS.c.created_at.type), inbox_item_id=bindparam("p_inbox_item_id"),
    )
    .returning(TURNS.c.id, TURNS.c.position)
)
_CLOSE_TURN = (
    update(TURNS)
    .where(TURNS.c.id == bindparam("p_turn_id"))
    .values({
        name: bindparam(f"p_{name}", type_=TURNS.c[name].type)
        for name in ("status", "text", "finish_reason", "prompt_tokens", "completion_tokens",
                     "time_to_first_token_s", "total_s", "finished_at")
    })
    .returning(TURNS.c.conversation_id)
)
_CHAT_OF_TURN = (
    select(CONVERSATIONS.c.chat_id)
    .join(TURNS, TURNS.c.conversation_id == CONVERSATIONS.c.id)
    .where(TURNS.c.id == bindparam("p_turn_id"))
)
_UNLINK_OTHERS = delete(TURN_MESSAGES).where(
    TURN_MESSAGES.c.turn_id == bindparam("p_turn_id"),
    TURN_MESSAGES.c.message_id.not_in(bindparam("p_keep", expanding=True)),
)
_LINK: dict[str, Any] = {}  # dialect name → the upsert of one link


def _link_statement(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name not in _LINK:
        statement = upsert(session, TURN_MESSAGES)
        _LINK[name] = statement.on_conflict_do_update(
            index_elements=[TURN_MESSAGES.c.chat_id, TURN_MESSAGES.c.message_id],
            set_={"turn_id": statement.excluded.turn_id},
        )
    return _LINK[name]


def mark_active(session: Session, conversation_id: int) -> int:
    """Mark the conversation active now, locking its row; its chat id. Raises NotFound."""
    chat_id = session.scalar(_MARK_ACTIVE, {"p_conversation_id": conversation_id, "p_now": utc_now()})
    if chat_id is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return int(chat_id)


def append_turn_row(
    session: Session,
    conversation_id: int,
    *,
    role: str,
    status: TurnStatus,
    text: str = "",
    inbox_item_id: int | None = None,
    after: NewTurn | None = None,
) -> NewTurn:
    """A new last turn in the conversation (two statements: the conversation marked active and
    locked, then the turn inserted at the position after the last). `after`: the turn this
    transaction appended just before, which marked and locked the conversation already."""
    chat_id = after.chat_id if after is not None else mark_active(session, conversation_id)
    created_at = utc_now()
    turn_id, position = (
        session.execute(_APPEND_TURN, {
            "p_conversation_id": conversation_id, "p_role": role, "p_text": text,
            "p_status": TurnStatus(status), "p_now": created_at, "p_inbox_item_id": inbox_item_id,
        })
    ).one()
    return NewTurn(turn_id, conversation_id, chat_id, position, created_at, role, TurnStatus(status), text)


def close_turn_row(session: Session, turn_id: int, values: dict[str, Any]) -> int:
    """Write how a turn ended (`values`: its status, text, counts, timings and finished_at); its
    conversation's id. Raises NotFound."""
    conversation_id = session.scalar(
        _CLOSE_TURN, {"p_turn_id": turn_id, **{f"p_{name}": value for name, value in values.items()}}
    )
    if conversation_id is None:
        raise NotFound(f"turn {turn_id} does not exist")
    return int(conversation_id)


def chat_of_turn(session: Session, turn_id: int) -> int:
    """The chat a turn's conversation is in. Raises NotFound."""
    chat_id = session.scalar(_CHAT_OF_TURN, {"p_turn_id": turn_id})
    if chat_id is None:
        raise NotFound(f"turn {turn_id} does not exist")
    return int(chat_id)


def link_messages(
    session: Session, turn_id: int, chat_id: int, message_ids: Sequence[int], *, only: bool = False
) -> tuple[int, ...]:
    """Point these chat messages at the turn, taking them from any turn they pointed at before;
    with `only`, the turn's other links go. The ids linked, sorted (all of the turn's with `only`)."""
    wanted = tuple(sorted(set(message_ids)))
    if only:
        session.execute(_UNLINK_OTHERS, {"p_turn_id": turn_id, "p_keep": list(wanted)})
    if wanted:
        session.execute(
            _link_statement(session),
            [{"chat_id": chat_id, "message_id": message_id, "turn_id": turn_id} for message_id in wanted],
        )
    return wanted
