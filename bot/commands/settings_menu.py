"""/settings: the chat's answer length and creativity, chosen with inline buttons and stored per chat.

Length is a share of the bot's MAX_NEW_TOKENS (never more); creativity picks greedy decoding or
sampling (see `bot.chat_preferences`). Pressing a button stores the choice and redraws the menu in
place. Who may change them: see `bot.menus`.
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.chat_preferences import (
    CREATIVITY_CHOICES,
    CREATIVITY_KEY,
    LENGTH_KEY,
    LENGTH_SHARES,
    ChatPreferences,
    available_modes,
    current_mode_name,
    max_new_tokens_for,
    read_preferences,
)
from bot.menus import choice_button, edit_menu, refuse_unless_allowed
from bot.press_answers import answer_press
from bot.runtime import BotRuntime, runtime_of
from bot.settings import Settings

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "settings:"
CALLBACK_PATTERN = rf"^{CALLBACK_PREFIX}"
CHOICES = {LENGTH_KEY: tuple(LENGTH_SHARES), CREATIVITY_KEY: CREATIVITY_CHOICES}
LABELS = {LENGTH_KEY: texts.LENGTH_LABELS, CREATIVITY_KEY: texts.CREATIVITY_LABELS}


def settings_menu(
    preferences: ChatPreferences, mode_name: str, settings: Settings
) -> tuple[str, InlineKeyboardMarkup]:
    """The current values in words, and a row of buttons for each setting, the current value marked."""
    text = texts.SETTINGS_MENU.format(
        length=texts.LENGTH_LABELS[preferences.length],
        max_new_tokens=max_new_tokens_for(preferences.length, settings),
        creativity=texts.CREATIVITY_LABELS[preferences.creativity],
        mode=mode_name,
    )
    current = {LENGTH_KEY: preferences.length, CREATIVITY_KEY: preferences.creativity}
    rows = [
        [
            choice_button(
                LABELS[key][value],
                f"{CALLBACK_PREFIX}{key}:{value}",
                chosen=value == current[key],
            )
            for value in values
        ]
        for key, values in CHOICES.items()
    ]
    return text, InlineKeyboardMarkup(rows)


async def _current_menu(runtime: BotRuntime, chat_id: int) -> tuple[str, InlineKeyboardMarkup]:
    modes = available_modes(runtime.modes, runtime.default_preamble)
    preferences = read_preferences(await runtime.store.chat_settings(chat_id), modes)
    mode_name = current_mode_name(preferences, runtime.default_preamble)
    return settings_menu(preferences, mode_name, runtime.settings)


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the chat's settings with buttons to change them."""
    message = update.effective_message
    text, keyboard = await _current_menu(runtime_of(context), message.chat_id)
    await message.reply_text(text, reply_markup=keyboard)


async def settings_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Store the pressed value (if it is a real option and the presser may), then redraw the menu."""
    query = update.callback_query
    key, _, value = query.data.removeprefix(CALLBACK_PREFIX).partition(":")
    if value not in CHOICES.get(key, ()):
        await answer_press(query, texts.BUTTON_EXPIRED, show_alert=True)
        return
    runtime = runtime_of(context)
    if await refuse_unless_allowed(query, context.bot, runtime.settings):
        return
    chat_id = query.message.chat.id
    await runtime.store.update_chat_settings(chat_id, **{key: value})
    log.info("chat %s set %s to %r (user %s)", chat_id, key, value, query.from_user.id)
    await answer_press(query, texts.SETTING_SAVED.format(label=LABELS[key][value]))
    await edit_menu(query, *await _current_menu(runtime, chat_id))
