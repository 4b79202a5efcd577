"""Session-level building blocks the Store composes into transactions.

Each is a plain function of an open Session inside a transaction (`storage.sessions` runs them,
on any database) and neither commits nor opens sessions; keeping them here leaves store.py a
readable list of what each public method does.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select
from sqlalchemy.orm import Session

from storage.convert import conversation_ref
from storage.images import NormalisedImage
from storage.schema import Chat, Conversation, Image, Turn, User, utc_now
from storage.turn_writes import CONVERSATIONS, upsert
from storage.types import ChatInfo, ConversationRef, StoreStats, TurnStatus, UserInfo

Row = TypeVar("Row", User, Chat)


def is_open_conversation(chat_id: int, user_id: int) -> ColumnElement[bool]:
    return and_(
        Conversation.chat_id == chat_id,
        Conversation.user_id == user_id,
        Conversation.closed_at.is_(None),
    )


def open_conversation(chat_id: int, user_id: int) -> Select[tuple[Conversation]]:
    return select(Conversation).where(is_open_conversation(chat_id, user_id))


# Built once, run with parameters (see storage.turn_writes): every question looks it up, in Core.
_OPEN_CONVERSATION = select(CONVERSATIONS).where(
    CONVERSATIONS.c.chat_id == bindparam("p_chat_id"), CONVERSATIONS.c.user_id == bindparam("p_user_id"),
    CONVERSATIONS.c.closed_at.is_(None),
)


def record_user_and_chat(session: Session, user: UserInfo, chat: ChatInfo) -> dict[str, Any]:
    """The user and chat rows as Telegram shows them now (made if missing): an upsert each. The
    chat's settings, which its upsert hands back."""
    now = utc_now()
    seen_user = dict(first_name=user.first_name, last_name=user.last_name, username=user.username,
                     language_code=user.language_code, last_seen_at=now)
    seen_chat = dict(type=chat.type, title=chat.title, username=chat.username, last_seen_at=now)
    session.execute(
        _record_statement(session, User.__table__, tuple(seen_user)),
        {"id": user.id, "settings": {}, "first_seen_at": now, **seen_user},
    )
    settings = session.scalar(
        _record_statement(session, Chat.__table__, tuple(seen_chat)),
        {"id": chat.id, "settings": {}, "first_seen_at": now, **seen_chat},
    )
    return dict(settings or {})


_RECORD: dict[tuple[str, str, tuple[str, ...]], Any] = {}  # built once: see storage.turn_writes


def _record_statement(session: Session, table: Any, refreshed: tuple[str, ...]) -> Any:
    key = (session.get_bind().dialect.name, table.name, refreshed)
    if key not in _RECORD:
        statement = upsert(session, table)
        _RECORD[key] = statement.on_conflict_do_update(
            index_elements=["id"], set_={name: statement.excluded[name] for name in refreshed}
        ).returning(table.c.settings)
    return _RECORD[key]


def find_or_start_conversation(session: Session, chat_id: int, user_id: int) -> ConversationRef:
    """The user's open conversation in the chat, started if there is none."""
    conversation = {"p_chat_id": chat_id, "p_user_id": user_id}
    open_one = session.execute(_OPEN_CONVERSATION, conversation).one_or_none()
    if open_one is None:
        lock_user(session, user_id)
        open_one = session.execute(_OPEN_CONVERSATION, conversation).one_or_none()
    if open_one is None:
        return conversation_ref(start_conversation(session, chat_id, user_id))
    return conversation_ref(open_one)  # type: ignore[arg-type]


def lock_user(session: Session, user_id: int) -> None:
    """Serialise one user's conversation changes. PostgreSQL waits here until a concurrent
    transaction on the same user ends, and the next statement then sees its rows; without the
    lock, ten concurrent /new commands keep colliding on the open-conversation index. (SQLite
    needs nothing: BEGIN IMMEDIATE already serialises writers.)"""
    get_or_add_placeholder(session, User, user_id)
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def start_conversation(session: Session, chat_id: int, user_id: int) -> Conversation:
    """Insert an open conversation; call with the user locked (see `lock_user`)."""
    get_or_add_placeholder(session, Chat, chat_id, owner_id=user_id)
    conversation = Conversation(chat_id=chat_id, user_id=user_id)
    session.add(conversation)
    session.flush()
    return conversation


def image_row(
    session: Session, image: NormalisedImage, file_unique_id: str | None, given_sha256: str
) -> Image:
    """The stored row for these normalised bytes, inserted if the content is new. `given_sha256` (the
    hash of the bytes as the caller gave them) finds a stored image handed back to us again: JPEG
    re-encoding is not idempotent, so its normalised bytes would otherwise hash differently."""
    row = session.scalar(select(Image).where(Image.sha256.in_((given_sha256, image.sha256))))
    if row is None:
        row = Image(
            sha256=image.sha256,
            data=image.data,
            mime_type=image.mime_type,
            width=image.width,
            height=image.height,
            size_bytes=len(image.data),
            file_unique_id=file_unique_id,
        )
        session.add(row)
        session.flush()
    elif row.file_unique_id is None and file_unique_id is not None:
        row.file_unique_id = file_unique_id
    return row


def get_or_add_placeholder(
    session: Session, model: type[Row], row_id: int, *, owner_id: int | None = None
) -> Row:
    """A user or chat row, created with what little we know if `touch` never recorded it.
    Telegram gives a private chat the id of its user, which is all we can infer about a chat."""
    row = session.get(model, row_id)
    if row is not None:
        return row
    now = utc_now()
    extra: dict[str, Any] = {}
    if model is Chat:
        extra["type"] = "private" if row_id == owner_id else "unknown"
    row = model(id=row_id, settings={}, first_seen_at=now, last_seen_at=now, **extra)
    session.add(row)
    session.flush()
    return row


def merge_settings(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A new dict (so the JSON column sees a change) with `changes` applied; None deletes."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def count_rows(session: Session) -> StoreStats:
    """Row counts, turns by status and stored image bytes."""

    def count(model: type) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    by_status = session.execute(select(Turn.status, func.count()).group_by(Turn.status))
    image_bytes = session.scalar(select(func.coalesce(func.sum(Image.size_bytes), 0)))
    return StoreStats(
        users=count(User),
        chats=count(Chat),
        conversations=count(Conversation),
        turns=count(Turn),
        images=count(Image),
        image_bytes=int(image_bytes or 0),
        turns_by_status={TurnStatus(status).value: n for status, n in by_status},
    )
