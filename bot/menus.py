"""What the /mode and /settings menus share: who may change a chat's choices, and editing a menu in place.

Both menus change how the bot answers everyone in the chat, so not just anyone may press them. In a
private chat the one person in it decides. In a group, the group's admins (asked from Telegram with
getChatMember at the moment of the press) and the bot's own ADMIN_USER_IDS may change them; everyone
else can still open the menus and read the current choices.
"""

from __future__ import annotations

import logging

from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from telegram.error import TelegramError

from bot import texts
from bot.press_answers import answer_press, edit_pressed_message
from bot.settings import Settings

log = logging.getLogger(__name__)

GROUP_ADMIN_STATUSES = frozenset({ChatMember.ADMINISTRATOR, ChatMember.OWNER})
MAX_CALLBACK_DATA_BYTES = 64  # Telegram's limit


async def may_change_chat_settings(bot: Bot, chat: Chat, user_id: int, settings: Settings) -> bool:
    """True if this user may change what the bot does for the whole chat."""
    if chat.type == Chat.PRIVATE or user_id in settings.admin_user_ids:
        return True
    try:
        member = await bot.get_chat_member(chat.id, user_id)
    except TelegramError as error:  # unknown to Telegram, or we may not ask: treat as not an admin
        log.info("could not look up user %s in chat %s: %s", user_id, chat.id, error)
        return False
    return member.status in GROUP_ADMIN_STATUSES


async def refuse_unless_allowed(query: CallbackQuery, bot: Bot, settings: Settings) -> bool:
    """Answer the press with a refusal and return True if the presser may not change the chat's choices."""
    if await may_change_chat_settings(bot, query.message.chat, query.from_user.id, settings):
        return False
    await answer_press(query, texts.GROUP_ADMINS_ONLY, show_alert=True)
    return True


def choice_button(label: str, callback_data: str, *, chosen: bool) -> InlineKeyboardButton:
    mark = texts.CURRENT_CHOICE_MARK if chosen else ""
    return InlineKeyboardButton(mark + label, callback_data=callback_data)


def fits_callback_data(data: str) -> bool:
    return len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES


async def edit_menu(query: CallbackQuery, text: str, keyboard: InlineKeyboardMarkup) -> None:
    """Show the menu's new state (a fresh menu if the old one is gone)."""
    await edit_pressed_message(query, text, keyboard)
