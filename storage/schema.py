"""The ORM tables: the one place that says what the bot remembers and how rows relate.

Relationships are `lazy="raise"` so an accidental lazy load in async code fails loudly in tests
instead of blocking the loop; queries load what they need with `selectinload`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum as PythonEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import InboxStatus, TurnStatus


def _values(statuses: type[PythonEnum]) -> list[str]:
    return [status.value for status in statuses]  # type: ignore[attr-defined]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite, which stores datetimes without an offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Named constraints keep future Alembic migrations (and SQLite batch mode) able to refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(256), default="")
    last_name: Mapped[str | None] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64))
    language_code: Mapped[str | None] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=utc_now)


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=utc_now)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_activity_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    closed_at: Mapped[datetime | None]


# One open conversation per (chat, user); partial unique indexes exist on SQLite and PostgreSQL.
Index(
    "uq_conversations_open_per_chat_user",
    Conversation.chat_id,
    Conversation.user_id,
    unique=True,
    sqlite_where=Conversation.closed_at.is_(None),
    postgresql_where=Conversation.closed_at.is_(None),
)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("conversation_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TurnStatus] = mapped_column(
        Enum(
            TurnStatus,
            native_enum=False,
            length=16,
            values_callable=_values,
        ),
        index=True,
    )
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    time_to_first_token_s: Mapped[float | None]
    total_s: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]
    # The inbox request this turn was written for (no foreign key: done requests are purged, turns
    # stay); it makes storing a question idempotent and finds the answers a crash interrupted.
    inbox_item_id: Mapped[int | None] = mapped_column(Integer, index=True)

    image_links: Mapped[list[TurnImage]] = relationship(
        order_by="TurnImage.position", lazy="raise", passive_deletes=True
    )
    messages: Mapped[list[TurnMessage]] = relationship(
        order_by="TurnMessage.message_id", lazy="raise", passive_deletes=True
    )


class TurnMessage(Base):
    """A Telegram message (in the conversation's chat) that carries or answers a turn."""

    __tablename__ = "turn_messages"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)


class Image(Base):
    """Normalised image bytes, stored once per content hash however many turns show them."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    mime_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int]
    height: Mapped[int]
    size_bytes: Mapped[int]
    file_unique_id: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class TurnImage(Base):
    """Which images a turn shows, in the order the user sent them."""

    __tablename__ = "turn_images"

    turn_id: Mapped[int] = mapped_column(
        ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)

    image: Mapped[Image] = relationship(lazy="raise")


class InboxItem(Base):
    """A request a person made (a message, or a command or button press that queues work), written
    the moment its update is handled and kept until it has been answered: the source of truth for
    what is still to be done, whichever bot process does it."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index("ix_inbox_conversation", "chat_id", "user_id", "status", "update_id"),
        Index("ix_inbox_album", "chat_id", "media_group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, unique=True)  # Telegram redelivers updates
    chat_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    status: Mapped[InboxStatus] = mapped_column(
        Enum(InboxStatus, native_enum=False, length=16, values_callable=_values),
        default=InboxStatus.PENDING,
    )
    outbox: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    retry_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None] = mapped_column(index=True)


class InboxClaim(Base):
    """Which bot process answers a conversation's requests now: a lease it renews while it works,
    so that one conversation is answered by one process at a time, in order, and a crashed
    process's conversations are taken over once its lease has run out."""

    __tablename__ = "inbox_claims"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
