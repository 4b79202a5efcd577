"""Plain value objects the store hands out; callers never see ORM rows or sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class TurnStatus(str, Enum):
    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # an assistant answer replaced by /retry
    UNDELIVERED = "undelivered"  # an answer Telegram did not take (yet): the person never saw it


class InboxStatus(str, Enum):
    """Where a stored request stands; only DONE requests are finished with."""

    PENDING = "pending"  # its work (storing the question, answering) is still to be done
    UNDELIVERED = "undelivered"  # its work is done, but replies wait in its outbox for Telegram
    DONE = "done"  # answered (or definitively failed and the person told)


@dataclass(frozen=True)
class UserInfo:
    id: int
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


@dataclass(frozen=True)
class ChatInfo:
    id: int
    type: str  # "private" | "group" | "supergroup" | "channel"
    title: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class ImageInput:
    """Image bytes as received; the store normalises them (EXIF-rotate, RGB, cap, re-encode)."""

    data: bytes
    file_unique_id: str | None = None


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    data: bytes  # normalised, re-encoded bytes
    mime_type: str
    width: int
    height: int
    file_unique_id: str | None = None


@dataclass(frozen=True)
class ConversationRef:
    id: int
    chat_id: int
    user_id: int
    created_at: datetime
    closed_at: datetime | None = None


@dataclass(frozen=True)
class StoredTurn:
    id: int
    conversation_id: int
    position: int
    role: str  # "user" | "assistant"
    text: str
    status: TurnStatus
    images: tuple[StoredImage, ...] = ()
    message_ids: tuple[int, ...] = ()  # Telegram message ids in the conversation's chat
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    total_s: float | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class AskedQuestion:
    """A question `Store.ask` stored, with what its answer needs to start, all from one transaction."""

    conversation_id: int
    history: tuple[StoredTurn, ...]  # the conversation's turns, the question last
    answer: StoredTurn  # the answer's turn, opened PENDING
    chat_settings: dict[str, Any]


@dataclass(frozen=True)
class StoreStats:
    users: int
    chats: int
    conversations: int
    turns: int
    images: int
    image_bytes: int
    turns_by_status: dict[str, int]


@dataclass(frozen=True)
class NewRequest:
    """A request as a handler hands it to the inbox: enough to do the work again after a restart.

    `payload` is the bot's own JSON description of the work; the store never looks inside it."""

    update_id: int  # Telegram's; a redelivered update is recognised by it
    chat_id: int
    user_id: int  # whose conversation the work belongs to
    kind: str
    payload: dict[str, Any]
    received_at: datetime
    media_group_id: str | None = None  # album items share one


@dataclass(frozen=True)
class StoredRequest:
    """A request in the inbox, as the store hands it out."""

    id: int
    update_id: int
    chat_id: int
    user_id: int
    kind: str
    payload: dict[str, Any]
    received_at: datetime
    status: InboxStatus
    media_group_id: str | None = None
    outbox: tuple[dict[str, Any], ...] = field(default=())  # replies Telegram has not taken yet
    retry_at: datetime | None = None  # not to be tried again before this
