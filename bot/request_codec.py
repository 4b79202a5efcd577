"""The requests of `bot.incoming` as the inbox stores them: a kind and a JSON payload, and back.

A request is written to the database before it waits in any queue, and may be read back by another
run of the bot (after a restart) or another process, so it must survive as plain JSON. The request
types are frozen dataclasses of ints, strings, bools, tuples and other such dataclasses; they are
encoded field by field and rebuilt from their type hints, so adding a field to a request needs no
code here. A stored chat id is the inbox row's (which follows a group upgraded to a supergroup).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, Union

from bot.incoming import AlbumItem, ConversationCall, IncomingMessage, RegenerateCall, TaskCall
from storage.types import ChatInfo

Request = Union[IncomingMessage, TaskCall, AlbumItem, ConversationCall, RegenerateCall]

QUESTION, TASK, ALBUM, RETRY, NEW, REGENERATE = "question", "task", "album", "retry", "new", "regenerate"
_TYPES: dict[str, type] = {
    QUESTION: IncomingMessage,
    TASK: TaskCall,
    ALBUM: AlbumItem,
    RETRY: ConversationCall,
    NEW: ConversationCall,
    REGENERATE: RegenerateCall,
}


class RequestUnreadable(ValueError):
    """A stored payload that does not fit its kind (written by a newer or broken version)."""


def encode(request: Request) -> dict[str, Any]:
    """The request as JSON-ready data (tuples become lists)."""
    return _plain(request)


def decode(kind: str, payload: dict[str, Any], chat_id: int) -> Request:
    """The request stored as `kind`, answered in the chat `chat_id` (the inbox row's)."""
    if kind not in _TYPES:
        raise RequestUnreadable(f"unknown request kind {kind!r}")
    try:
        return _in_chat(_build(_TYPES[kind], payload), chat_id)
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise RequestUnreadable(f"a stored {kind} request cannot be read: {error}") from error


def _plain(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


_SCALARS = (str, int, float, bool, type(None))


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(hint: Any, value: Any) -> Any:
    """`value` (JSON) as an instance of the type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _build(inner, value)
    if origin is tuple:
        return tuple(_build(args[0], item) for item in value)
    if dataclasses.is_dataclass(hint):
        fields = {field.name for field in dataclasses.fields(hint)}
        hints = _hints(hint)
        return hint(**{name: _build(hints[name], item) for name, item in value.items() if name in fields})
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ValueError(f"{value!r} is not a {hint.__name__}")
    return value


def _in_chat(request: Request, chat_id: int) -> Request:
    """The request with its chat (and where to answer) moved to `chat_id`, where that changed."""
    changes: dict[str, Any] = {}
    fields = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
    chat = fields.get("chat")
    if isinstance(chat, ChatInfo) and chat.id != chat_id:
        changes["chat"] = dataclasses.replace(chat, id=chat_id, type="supergroup")
    for name in ("target", "reply"):
        target = fields.get(name)
        if target is not None and target.chat_id != chat_id:
            changes[name] = dataclasses.replace(target, chat_id=chat_id, reply_to_message_id=None)
    return dataclasses.replace(request, **changes) if changes else request


def kind_of(request: Request, *, new_conversation: bool = False) -> str:
    """The kind a request is stored as (a ConversationCall is /retry unless it is /new)."""
    if isinstance(request, ConversationCall):
        return NEW if new_conversation else RETRY
    return next(kind for kind, cls in _TYPES.items() if isinstance(request, cls))
