"""The Bot API methods that write to chats: send, edit, delete, drafts, photos and documents.

Each validates its parameters in Telegram's order and words, checks the flood limits, and records
the result in the message store, where tests read it back as BotMessage records.
"""

from __future__ import annotations

import mimetypes
import time
from typing import TYPE_CHECKING, Any

from .formatting import parse_formatted, utf16_len
from .state import BotMessage, ChatHandle, DraftRecord
from .wire import ApiError, UploadedFile, bad_request, too_many_requests

if TYPE_CHECKING:
    from .server import BotApiStandIn

MAX_TEXT = 4096
MAX_CAPTION = 1024
NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")


def resolve_chat(server: BotApiStandIn, params: dict[str, Any]) -> ChatHandle:
    chat_id = params.get("chat_id")
    if chat_id in (None, ""):
        raise bad_request("chat_id is empty")
    if isinstance(chat_id, str):
        chat = next((c for c in server.chats.values() if f"@{c.username}" == chat_id), None)
    else:
        chat = server.chats.get(chat_id)
    if chat is None:
        raise bad_request("chat not found")
    return chat


def writable_chat(server: BotApiStandIn, params: dict[str, Any]) -> ChatHandle:
    chat = resolve_chat(server, params)
    if chat.blocked:
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    if chat.migrated_to is not None:
        raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                       migrate_to_chat_id=chat.migrated_to)
    return chat


def formatted(params: dict[str, Any], text_key: str, entities_key: str, limit: int,
              too_long: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities after parse_mode, trimmed like Telegram trims them."""
    raw = params.get(text_key) or ""
    if params.get(entities_key):
        plain, entities = raw, list(params[entities_key])
    else:
        plain, entities = parse_formatted(raw, params.get("parse_mode"))
    plain, entities = _strip(plain, entities)
    if len(plain) > limit:
        raise bad_request(too_long)
    return plain, entities


def _strip(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped = text.strip()
    if not stripped:
        return "", []
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    end = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(0, entity["offset"] - shift)
        stop = min(end, entity["offset"] + entity["length"] - shift)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


def topic(chat: ChatHandle, params: dict[str, Any]) -> int | None:
    thread_id = params.get("message_thread_id")
    if thread_id is None:
        return None
    if not chat.is_forum or thread_id not in chat.topics:
        raise bad_request("message thread not found")
    return thread_id


def reply_target(server: BotApiStandIn, chat: ChatHandle, params: dict[str, Any]) -> int | None:
    reply = params.get("reply_parameters") or {}
    message_id = reply.get("message_id", params.get("reply_to_message_id"))
    if message_id is None:
        return None
    if server.store.get(chat.id, message_id) is not None:
        return message_id
    if reply.get("allow_sending_without_reply", params.get("allow_sending_without_reply")):
        return None
    raise bad_request("message to be replied not found")


def inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    """The reply_markup to attach, checked like Telegram checks inline keyboards."""
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return None  # reply keyboards live on the client, not on the message
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup should be an '
                          'Array of Arrays')
    for button in (button for row in rows for button in row):
        if not button.get("text"):
            raise bad_request("text buttons are unallowed in the inline keyboard")
        data = button.get("callback_data")
        if data is not None and not 1 <= len(data.encode("utf-8")) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
        if data is None and not set(button) - {"text"}:
            raise bad_request("text buttons are unallowed in the inline keyboard")
    return markup if any(rows) else None


def check_flood(server: BotApiStandIn, chat: ChatHandle, *, draft: bool = False) -> None:
    wait = server.flood.retry_after(chat.id, chat.type, draft=draft)
    if wait is not None:
        server.flood_429_count += 1
        raise too_many_requests(wait)


async def send_message(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat = writable_chat(server, params)
    text, entities = formatted(params, "text", "entities", MAX_TEXT, "message is too long")
    if not text:
        raise bad_request("message text is empty")
    content: dict[str, Any] = {"text": text}
    if entities:
        content["entities"] = entities
    return _deliver(server, chat, params, "text", text, content)


def _deliver(server: BotApiStandIn, chat: ChatHandle, params: dict[str, Any], kind: str,
             text: str, content: dict[str, Any]) -> dict[str, Any]:
    """Checks what every send shares, then stores the bot's new message and returns it."""
    thread_id = topic(chat, params)
    reply_to = reply_target(server, chat, params)
    markup = inline_markup(params)
    check_flood(server, chat)
    wire = server.new_message(chat, server.bot_user, thread_id=thread_id, reply_to=reply_to)
    wire.update(content)
    if markup:
        wire["reply_markup"] = markup
    server.store.add(wire)
    record = BotMessage(
        chat_id=chat.id, message_id=wire["message_id"], text=text, kind=kind, wire=wire,
        reply_to_message_id=reply_to, message_thread_id=thread_id, reply_markup=markup,
        entities=content.get("entities") or content.get("caption_entities") or [],
        history=[text])
    server.store.bot[(chat.id, record.message_id)] = record
    server.flood.record(chat.id, chat.type)
    return wire


def _editable(server: BotApiStandIn, params: dict[str, Any]) -> tuple[ChatHandle, BotMessage]:
    if params.get("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = writable_chat(server, params)
    message_id = params.get("message_id")
    if message_id is None:
        raise bad_request("message identifier is not specified")
    record = server.store.bot.get((chat.id, message_id))
    if record is None or record.deleted:
        if server.store.get(chat.id, message_id) is not None:
            raise bad_request("message can't be edited")
        raise bad_request("message to edit not found")
    return chat, record


def _apply_edit(server: BotApiStandIn, chat: ChatHandle, record: BotMessage, text: str,
                entities: list[dict[str, Any]], markup: dict[str, Any] | None) -> dict[str, Any]:
    if (text, entities, markup) == (record.text, record.entities, record.reply_markup):
        raise bad_request(NOT_MODIFIED)
    check_flood(server, chat)
    text_key, entities_key = (("text", "entities") if record.kind == "text"
                              else ("caption", "caption_entities"))
    for key, value in ((text_key, text), (entities_key, entities), ("reply_markup", markup)):
        if value:
            record.wire[key] = value
        else:
            record.wire.pop(key, None)
    if text != record.text:
        record.history.append(text)
    record.text, record.entities, record.reply_markup = text, entities, markup
    record.wire["edit_date"] = int(time.time())
    server.flood.record(chat.id, chat.type)
    return record.wire


async def edit_message_text(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat, record = _editable(server, params)
    text, entities = formatted(params, "text", "entities", MAX_TEXT, "message is too long")
    if not text:
        raise bad_request("message text is empty")
    if record.kind != "text":
        raise bad_request("there is no text in the message to edit")
    return _apply_edit(server, chat, record, text, entities, inline_markup(params))


async def edit_message_caption(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat, record = _editable(server, params)
    if record.kind == "text":
        raise bad_request("there is no caption in the message to edit")
    caption, entities = formatted(params, "caption", "caption_entities", MAX_CAPTION,
                                  "message caption is too long")
    return _apply_edit(server, chat, record, caption, entities, inline_markup(params))


async def edit_message_reply_markup(server: BotApiStandIn, params: dict[str, Any]
                                    ) -> dict[str, Any]:
    chat, record = _editable(server, params)
    return _apply_edit(server, chat, record, record.text, record.entities, inline_markup(params))


async def delete_message(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    chat = resolve_chat(server, params)
    message_id = params.get("message_id")
    wire = server.store.get(chat.id, message_id) if message_id is not None else None
    if wire is None:
        raise bad_request("message to delete not found")
    record = server.store.bot.get((chat.id, message_id))
    if record is None and chat.type != "private":
        raise bad_request("message can't be deleted")
    del server.store.wire[(chat.id, message_id)]
    if record is not None:
        record.deleted = True
    return True


async def send_message_draft(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    chat = writable_chat(server, params)
    if chat.type != "private":
        raise bad_request("TEXTDRAFT_PEER_INVALID")
    draft_id = params.get("draft_id")
    if not draft_id:
        raise bad_request("draft_id must be non-zero")
    text, _ = formatted(params, "text", "entities", MAX_TEXT, "message is too long")
    thread_id = topic(chat, params)
    check_flood(server, chat, draft=True)
    server.draft_records.append(DraftRecord(chat.id, draft_id, text, thread_id, time.time()))
    server.flood.record(chat.id, chat.type, draft=True)
    return True


async def send_photo(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat = writable_chat(server, params)
    caption, entities = formatted(params, "caption", "caption_entities", MAX_CAPTION,
                                  "message caption is too long")
    photo = params.get("photo")
    if isinstance(photo, UploadedFile):
        sizes = server.files.add_photo(photo.data)
    else:
        sizes = server.files.photo_sizes(str(photo or ""))
    if not sizes:
        raise bad_request("wrong file identifier/HTTP URL specified")
    content = _caption_content({"photo": sizes}, caption, entities)
    return _deliver(server, chat, params, "photo", caption, content)


async def send_document(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat = writable_chat(server, params)
    caption, entities = formatted(params, "caption", "caption_entities", MAX_CAPTION,
                                  "message caption is too long")
    upload = params.get("document")
    if isinstance(upload, UploadedFile):
        extension = mimetypes.guess_extension(upload.content_type or "") or ""
        stored = server.files.add(upload.data, folder="documents", extension=extension)
        document = {**stored.wire(), "file_name": upload.filename,
                    "mime_type": upload.content_type or "application/octet-stream"}
    else:
        stored = server.files.by_id(str(upload or ""))
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        document = stored.wire()
    content = _caption_content({"document": document}, caption, entities)
    return _deliver(server, chat, params, "document", caption, content)


def _caption_content(content: dict[str, Any], caption: str,
                     entities: list[dict[str, Any]]) -> dict[str, Any]:
    if caption:
        content["caption"] = caption
    if entities:
        content["caption_entities"] = entities
    return content
