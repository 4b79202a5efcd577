"""How the stand-in reads Bot API requests and writes answers, the way Telegram's servers do.

python-telegram-bot posts form fields (strings raw, everything else JSON-encoded) or multipart
when uploading; other clients post JSON bodies or query strings. This module turns all of them into
one typed parameter dict and turns failures into Telegram's error JSON with the matching status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

INT_FIELDS = frozenset(
    {
        "chat_id", "message_id", "from_chat_id", "offset", "limit", "timeout", "draft_id",
        "message_thread_id", "reply_to_message_id", "user_id", "cache_time", "max_connections",
    }
)
BOOL_FIELDS = frozenset(
    {
        "disable_notification", "protect_content", "allow_sending_without_reply", "show_alert",
        "drop_pending_updates", "has_spoiler", "disable_content_type_detection",
        "show_caption_above_media", "allow_paid_broadcast",
    }
)
JSON_FIELDS = frozenset(
    {
        "reply_parameters", "reply_markup", "entities", "caption_entities",
        "link_preview_options", "allowed_updates", "commands", "scope", "media", "message_ids",
    }
)


class ApiError(Exception):
    """A failure answered to the client exactly as Telegram would answer it."""

    def __init__(self, error_code: int, description: str, *, retry_after: int | None = None,
                 migrate_to_chat_id: int | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False, "error_code": self.error_code, "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        if self.migrate_to_chat_id is not None:
            body["parameters"] = {"migrate_to_chat_id": self.migrate_to_chat_id}
        return body


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


NOT_FOUND = ApiError(404, "Not Found")
UNAUTHORIZED = ApiError(401, "Unauthorized")


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request (an upload by the bot)."""

    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:
        return f"UploadedFile({self.filename!r}, {len(self.data)} bytes)"


def ok_response(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.error_code)


async def read_params(request: web.Request) -> dict[str, Any]:
    """All parameters of a call, typed: ints, bools, decoded JSON objects, uploaded files."""
    raw: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.text()
        if body.strip():
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise bad_request("can't parse JSON object") from exc
            raw.update(decoded if isinstance(decoded, dict) else {})
    elif request.can_read_body:
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                raw[name] = UploadedFile(value.filename, value.content_type, value.file.read())
            else:
                raw[name] = value
    return {name: _typed(name, value) for name, value in raw.items()}


def _typed(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            if name == "timeout" and _is_number(value):
                return float(value)
            if name == "chat_id":
                return value  # "@channelusername" is a valid chat_id
            raise bad_request(f"invalid {name} specified") from None
    if name in BOOL_FIELDS:
        return value.strip().lower() in ("true", "1")
    if name in JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None
    return value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
