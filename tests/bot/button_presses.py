"""Test helpers for inline buttons: pressing what a client could not send (forged data), reading answers.

`BotApiStandIn.press_button` only presses buttons that exist, as a real client does; a forged or stale
press is built here the same way, with callback data the message never offered.
"""

from __future__ import annotations

from typing import Any

from standin.telegram import methods as standin_methods
from standin.telegram.server import BotApiStandIn
from standin.telegram.state import BotMessage, ChatHandle, UserHandle

BOT = "@idefics_test_bot"


def press_forged(
    bot_api: BotApiStandIn, chat: ChatHandle, user: UserHandle, message: BotMessage, data: str
) -> dict[str, Any]:
    """A callback query with data the message's buttons never carried (a modified client, an old bot)."""
    query = {
        "id": str(next(bot_api._query_ids)),
        "from": user.wire(),
        "message": dict(message.wire),
        "chat_instance": str(abs(hash(chat.id))),
        "data": data,
    }
    bot_api.open_callback_queries.add(query["id"])
    bot_api.updates.push("callback_query", query)
    return query


async def callback_answer(bot_api: BotApiStandIn, query: dict[str, Any]) -> str:
    """The text the bot answered a button press with (waits for it); "" for a silent answer."""
    answer = await bot_api.wait_for(lambda: bot_api.callback_answers.get(query["id"]))
    return answer.get("text") or ""


def button_data(message: BotMessage, label: str) -> str:
    """The callback data of the button with this label (the ✅ mark of a current choice ignored)."""
    for text, data in message.buttons:
        if text.removeprefix("✅ ") == label:
            return data
    raise AssertionError(f"no button {label!r} in {message.buttons}")


def make_group_admins(monkeypatch, *admin_ids: int) -> None:
    """Make the stand-in's getChatMember report these users as group administrators."""
    plain = standin_methods.METHODS["getchatmember"]

    async def get_chat_member(server: BotApiStandIn, params: dict[str, Any]) -> dict[str, Any]:
        member = await plain(server, params)
        if params.get("user_id") in admin_ids:
            member = {**member, "status": "administrator", **ADMIN_RIGHTS}
        return member

    monkeypatch.setitem(standin_methods.METHODS, "getchatmember", get_chat_member)


ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
}
