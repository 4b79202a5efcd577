"""Session-level building blocks the Store composes into transactions.

Each takes an open AsyncSession inside a transaction and neither commits nor opens sessions;
keeping them here leaves store.py a readable list of what each public method does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import NotFound
from storage.images import NormalisedImage
from storage.schema import Chat, Conversation, Image, Turn, TurnMessage, User, utc_now
from storage.types import ChatInfo, StoreStats, TurnStatus, UserInfo

Row = TypeVar("Row", User, Chat)


def is_open_conversation(chat_id: int, user_id: int) -> ColumnElement[bool]:
    return and_(
        Conversation.chat_id == chat_id,
        Conversation.user_id == user_id,
        Conversation.closed_at.is_(None),
    )


def open_conversation(chat_id: int, user_id: int) -> Select[tuple[Conversation]]:
    return select(Conversation).where(is_open_conversation(chat_id, user_id))


async def record_user_and_chat(session: AsyncSession, user: UserInfo, chat: ChatInfo) -> None:
    """The user and chat rows as Telegram shows them now (made if missing)."""
    now = utc_now()
    user_row = await get_or_add_placeholder(session, User, user.id)
    user_row.first_name = user.first_name
    user_row.last_name = user.last_name
    user_row.username = user.username
    user_row.language_code = user.language_code
    user_row.last_seen_at = now
    chat_row = await get_or_add_placeholder(session, Chat, chat.id, owner_id=user.id)
    chat_row.type = chat.type
    chat_row.title = chat.title
    chat_row.username = chat.username
    chat_row.last_seen_at = now


async def active_conversation_row(session: AsyncSession, chat_id: int, user_id: int) -> Conversation:
    """The user's open conversation in the chat, started if there is none."""
    open_one = await session.scalar(open_conversation(chat_id, user_id))
    if open_one is None:
        await lock_user(session, user_id)
        open_one = await session.scalar(open_conversation(chat_id, user_id))
    if open_one is None:
        open_one = await start_conversation(session, chat_id, user_id)
    return open_one


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """Serialise one user's conversation changes. PostgreSQL waits here until a concurrent
    transaction on the same user ends, and the next statement then sees its rows; without the
    lock, ten concurrent /new commands keep colliding on the open-conversation index. (SQLite
    needs nothing: BEGIN IMMEDIATE already serialises writers.)"""
    await get_or_add_placeholder(session, User, user_id)
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())


async def start_conversation(session: AsyncSession, chat_id: int, user_id: int) -> Conversation:
    """Insert an open conversation; call with the user locked (see `lock_user`)."""
    await get_or_add_placeholder(session, Chat, chat_id, owner_id=user_id)
    conversation = Conversation(chat_id=chat_id, user_id=user_id)
    session.add(conversation)
    await session.flush()
    return conversation


async def locked_conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    """The conversation row, locked (where the database has row locks) so that turn positions
    are handed out one writer at a time."""
    conversation = await session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} does not exist")
    return conversation


async def append_turn(
    session: AsyncSession, conversation_id: int, *, role: str, status: TurnStatus, text: str = ""
) -> tuple[Turn, Conversation]:
    """A new last turn (with empty image and message lists) in the conversation, which is
    locked while positions are counted and marked active."""
    conversation = await locked_conversation(session, conversation_id)
    turn = Turn(
        conversation_id=conversation.id,
        position=await next_position(session, conversation.id),
        role=role,
        text=text,
        status=status,
        image_links=[],
        messages=[],
    )
    session.add(turn)
    conversation.last_activity_at = utc_now()
    return turn, conversation


async def next_position(session: AsyncSession, conversation_id: int) -> int:
    last = await session.scalar(
        select(func.max(Turn.position)).where(Turn.conversation_id == conversation_id)
    )
    return 0 if last is None else last + 1


async def load_turn(session: AsyncSession, turn_id: int, *options: Any) -> Turn:
    turn = await session.get(Turn, turn_id, options=options)
    if turn is None:
        raise NotFound(f"turn {turn_id} does not exist")
    return turn


async def mark_activity(session: AsyncSession, conversation_id: int) -> None:
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(last_activity_at=utc_now())
        .execution_options(synchronize_session=False)
    )


async def link_turn_messages(
    session: AsyncSession, turn: Turn, chat_id: int, message_ids: Sequence[int]
) -> None:
    """Point these chat messages at `turn`, taking them from any turn they pointed at before.
    `turn.messages` must already be loaded (or freshly built)."""
    wanted = sorted(set(message_ids) - {message.message_id for message in turn.messages})
    if not wanted:
        return
    await session.execute(
        delete(TurnMessage)
        .where(TurnMessage.chat_id == chat_id, TurnMessage.message_id.in_(wanted))
        .execution_options(synchronize_session=False)
    )
    for message_id in wanted:
        turn.messages.append(TurnMessage(chat_id=chat_id, message_id=message_id))
    await session.flush()


async def relink_turn_messages(
    session: AsyncSession, turn: Turn, message_ids: Sequence[int], *, only: bool
) -> None:
    """`link_turn_messages` in the turn's chat; with `only`, its other links go (`turn.messages`
    must be loaded)."""
    if only:
        for gone in [link for link in turn.messages if link.message_id not in message_ids]:
            turn.messages.remove(gone)
            await session.delete(gone)
        await session.flush()
    chat_id = await session.scalar(select(Conversation.chat_id).where(Conversation.id == turn.conversation_id))
    await link_turn_messages(session, turn, chat_id, message_ids)  # type: ignore[arg-type]


async def image_row(
    session: AsyncSession, image: NormalisedImage, file_unique_id: str | None, given_sha256: str
) -> Image:
    """The stored row for these normalised bytes, inserted if the content is new. `given_sha256` (the
    hash of the bytes as the caller gave them) finds a stored image handed back to us again: JPEG
    re-encoding is not idempotent, so its normalised bytes would otherwise hash differently."""
    row = await session.scalar(select(Image).where(Image.sha256.in_((given_sha256, image.sha256))))
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
        await session.flush()
    elif row.file_unique_id is None and file_unique_id is not None:
        row.file_unique_id = file_unique_id
    return row


async def get_or_add_placeholder(
    session: AsyncSession, model: type[Row], row_id: int, *, owner_id: int | None = None
) -> Row:
    """A user or chat row, created with what little we know if `touch` never recorded it.
    Telegram gives a private chat the id of its user, which is all we can infer about a chat."""
    row = await session.get(model, row_id)
    if row is not None:
        return row
    now = utc_now()
    extra: dict[str, Any] = {}
    if model is Chat:
        extra["type"] = "private" if row_id == owner_id else "unknown"
    row = model(id=row_id, settings={}, first_seen_at=now, last_seen_at=now, **extra)
    session.add(row)
    await session.flush()
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


async def count_rows(session: AsyncSession) -> StoreStats:
    """Row counts, turns by status and stored image bytes."""

    async def count(model: type) -> int:
        return await session.scalar(select(func.count()).select_from(model)) or 0

    by_status = await session.execute(select(Turn.status, func.count()).group_by(Turn.status))
    image_bytes = await session.scalar(select(func.coalesce(func.sum(Image.size_bytes), 0)))
    return StoreStats(
        users=await count(User),
        chats=await count(Chat),
        conversations=await count(Conversation),
        turns=await count(Turn),
        images=await count(Image),
        image_bytes=int(image_bytes or 0),
        turns_by_status={TurnStatus(status).value: n for status, n in by_status},
    )
