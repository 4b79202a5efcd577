"""/mode: show the few-shot modes (preambles) and switch the chat's mode with a button (or `/mode NAME`).

The list is read again from disk each time /mode is used or a mode button is pressed, so a mode file
an admin drops into MODES_DIR (or removes) counts at once, without a restart; broken files are skipped
with a log line by `model.preamble.load_modes`. Who may switch: see `bot.menus`.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.chat_preferences import (
    MODE_KEY,
    available_modes,
    current_mode_name,
    read_preferences,
)
from bot.menus import (
    choice_button,
    edit_menu,
    fits_callback_data,
    may_change_chat_settings,
    refuse_unless_allowed,
)
from bot.press_answers import answer_press
from bot.runtime import BotRuntime, runtime_of
from model.preamble import NO_PREAMBLE, load_modes
from model.types import Preamble

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "mode:"
CALLBACK_PATTERN = rf"^{CALLBACK_PREFIX}"
BUTTONS_PER_ROW = 2
MAX_NAME_ECHOED = 40  # a mistyped name is quoted back, but not a whole paragraph of it


async def reload_modes(runtime: BotRuntime) -> dict[str, Preamble]:
    """Re-read the built-in and admin mode files; the modes a chat can pick now."""
    runtime.modes = await asyncio.to_thread(load_modes, runtime.settings.modes_dir)
    return available_modes(runtime.modes, runtime.default_preamble)


def mode_menu(modes: dict[str, Preamble], current: str) -> tuple[str, InlineKeyboardMarkup]:
    """The menu's text (each mode with its description) and one button per mode, plus "no preamble"."""
    pickable = {name: mode for name, mode in modes.items() if fits_callback_data(CALLBACK_PREFIX + name)}
    for name in modes.keys() - pickable.keys():
        log.warning("mode %r is not offered: its name is too long for a button", name)
    lines = [
        texts.MODE_LINE.format(name=name, description=mode.description.strip() or texts.MODE_NO_DESCRIPTION)
        for name, mode in sorted(pickable.items())
    ]
    lines.append(texts.MODE_LINE.format(name=NO_PREAMBLE, description=texts.NO_PREAMBLE_DESCRIPTION))
    buttons = [
        choice_button(name, CALLBACK_PREFIX + name, chosen=name == current) for name in sorted(pickable)
    ]
    buttons.append(
        choice_button(
            texts.NO_PREAMBLE_BUTTON,
            CALLBACK_PREFIX + NO_PREAMBLE,
            chosen=current == NO_PREAMBLE,
        )
    )
    rows = [buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]
    text = texts.MODE_MENU.format(current=current, modes="\n".join(lines))
    return text, InlineKeyboardMarkup(rows)


async def mode_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the modes with their descriptions, the chat's current one marked; `/mode NAME` switches to NAME."""
    message = update.effective_message
    runtime = runtime_of(context)
    modes = await reload_modes(runtime)
    if context.args:
        await _switch_by_name(update, context, " ".join(context.args), modes)
        return
    preferences = read_preferences(await runtime.store.chat_settings(message.chat_id), modes)
    text, keyboard = mode_menu(modes, current_mode_name(preferences, runtime.default_preamble))
    await message.reply_text(text, reply_markup=keyboard)


async def _switch_by_name(
    update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, modes: dict[str, Preamble]
) -> None:
    """What a press of NAME's button does, typed instead; a name that is no mode gets the list of names."""
    message, runtime = update.effective_message, runtime_of(context)
    names = [*sorted(modes), NO_PREAMBLE]
    chosen = next((known for known in names if known.casefold() == name.strip().casefold()), None)
    if chosen is None:
        echoed = name.strip()[:MAX_NAME_ECHOED]
        await message.reply_text(texts.MODE_UNKNOWN.format(name=echoed, known=", ".join(names)))
        return
    name = chosen
    user = update.effective_user
    if not await may_change_chat_settings(context.bot, message.chat, user.id, runtime.settings):
        await message.reply_text(texts.GROUP_ADMINS_ONLY)
        return
    await runtime.store.update_chat_settings(message.chat_id, **{MODE_KEY: name})
    log.info("chat %s switched to mode %r by user %s", message.chat_id, name, user.id)
    await message.reply_text(texts.MODE_SET.format(name=name))


async def mode_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Switch the chat to the pressed mode (if it still exists and the presser may), then redraw the menu."""
    query = update.callback_query
    runtime = runtime_of(context)
    if await refuse_unless_allowed(query, context.bot, runtime.settings):
        return
    name = query.data.removeprefix(CALLBACK_PREFIX)
    modes = await reload_modes(runtime)
    if name != NO_PREAMBLE and name not in modes:
        await answer_press(query, texts.MODE_GONE, show_alert=True)
        return
    chat_id = query.message.chat.id
    await runtime.store.update_chat_settings(chat_id, **{MODE_KEY: name})
    log.info("chat %s switched to mode %r by user %s", chat_id, name, query.from_user.id)
    await answer_press(query, texts.MODE_SET.format(name=name))
    await edit_menu(query, *mode_menu(modes, name))
