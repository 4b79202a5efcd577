"""The Bot API methods that don't write to chats, and the table of every supported method.

Method names are matched case-insensitively, as Telegram does; a name not in the table is answered
404 "Not Found".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import messages
from .files import GET_FILE_LIMIT
from .webhooks import WEBHOOK_ACTIVE
from .wire import bad_request

if TYPE_CHECKING:
    from .server import BotApiStandIn

COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
})


async def get_me(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    return {**server.bot_user.wire(), "can_join_groups": True,
            "can_read_all_group_messages": False, "supports_inline_queries": False,
            "can_connect_to_business": False, "has_main_web_app": False}


async def get_updates(server: BotApiStandIn, params: dict[str, Any]) -> list[dict[str, Any]]:
    if server.webhook.active:
        raise WEBHOOK_ACTIVE
    return await server.updates.poll(
        offset=params.get("offset", 0), limit=params.get("limit", 100),
        timeout=params.get("timeout", 0), allowed_updates=params.get("allowed_updates"))


async def set_webhook(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    return await server.webhook.set(params)


async def delete_webhook(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    return await server.webhook.delete(bool(params.get("drop_pending_updates")))


async def get_webhook_info(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    return server.webhook.info()


async def returns_true(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    return True


def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
    scope = params.get("scope") or {"type": "default"}
    return scope.get("type", "default"), params.get("language_code", "")


async def set_my_commands(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise bad_request("parameter \"commands\" is required")
    for command in commands:
        if not COMMAND_NAME.fullmatch(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    server.commands[_commands_key(params)] = [
        {"command": c["command"], "description": c["description"]} for c in commands]
    return True


async def get_my_commands(server: BotApiStandIn, params: dict[str, Any]) -> list[dict[str, str]]:
    return server.commands.get(_commands_key(params), [])


async def delete_my_commands(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    server.commands.pop(_commands_key(params), None)
    return True


async def send_chat_action(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    chat = messages.writable_chat(server, params)
    action = params.get("action")
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    messages.topic(chat, params)
    server.chat_action_records.append((chat.id, action))
    return True


async def answer_callback_query(server: BotApiStandIn, params: dict[str, Any]) -> bool:
    query_id = params.get("callback_query_id")
    if query_id not in server.open_callback_queries:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    if len(params.get("text") or "") > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    server.open_callback_queries.discard(query_id)
    server.callback_answers[query_id] = params
    return True


async def get_file(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    stored = server.files.by_id(str(params.get("file_id") or ""))
    if stored is None:
        raise bad_request("invalid file_id")
    if stored.reported_size > GET_FILE_LIMIT:
        raise bad_request("file is too big")
    return {**stored.wire(), "file_path": stored.file_path}


async def get_chat(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat = messages.resolve_chat(server, params)
    return {**chat.wire(), "accent_color_id": 0, "max_reaction_count": 11,
            "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                    "unique_gifts": False, "premium_subscription": False,
                                    "gifts_from_channels": False}}


async def get_chat_member(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
    chat = messages.resolve_chat(server, params)
    user_id = params.get("user_id")
    if user_id == server.bot_user.id:
        return {"status": "member", "user": server.bot_user.wire()}
    user = server.users.get(user_id)
    if user is None:
        raise bad_request("user not found")
    in_chat = chat.type != "private" or chat.id == user.id
    return {"status": "member" if in_chat else "left", "user": user.wire()}


Handler = Callable[["BotApiStandIn", dict[str, Any]], Awaitable[Any]]

METHODS: dict[str, Handler] = {name.lower(): handler for name, handler in {
    "getMe": get_me, "getUpdates": get_updates, "setWebhook": set_webhook,
    "deleteWebhook": delete_webhook, "getWebhookInfo": get_webhook_info, "logOut": returns_true,
    "close": returns_true,
    "setMyCommands": set_my_commands, "getMyCommands": get_my_commands,
    "deleteMyCommands": delete_my_commands, "sendChatAction": send_chat_action,
    "answerCallbackQuery": answer_callback_query, "getFile": get_file, "getChat": get_chat,
    "getChatMember": get_chat_member,
    "sendMessage": messages.send_message, "editMessageText": messages.edit_message_text,
    "editMessageCaption": messages.edit_message_caption,
    "editMessageReplyMarkup": messages.edit_message_reply_markup,
    "deleteMessage": messages.delete_message, "sendMessageDraft": messages.send_message_draft,
    "sendPhoto": messages.send_photo, "sendDocument": messages.send_document,
}.items()}
