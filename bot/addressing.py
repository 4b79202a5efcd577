"""When a message is meant for the bot, and what it says once the bot's @mention is taken out.

In private chats every message is for the bot. In groups the bot speaks only when spoken to: an
`@botname` mention (found through the message's entities, in text or caption), or a reply to one of
its own messages. Commands addressed to it (`/cmd@botname`) are recognised by PTB's CommandHandler.
"""

from __future__ import annotations

import re

from telegram import Chat, Message, MessageEntity
from telegram.ext import filters


def mentions_bot(message: Message, bot_username: str) -> bool:
    """True when the text or caption has an @mention entity naming this bot."""
    wanted = f"@{bot_username}".casefold()
    for parsed in (
        message.parse_entities([MessageEntity.MENTION]),
        message.parse_caption_entities([MessageEntity.MENTION]),
    ):
        if any(text.casefold() == wanted for text in parsed.values()):
            return True
    return False


def replies_to_bot(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == bot_id)


def is_addressed_to_bot(message: Message) -> bool:
    """Private chat, a mention of the bot, or a reply to one of its messages."""
    if message.chat.type == Chat.PRIVATE:
        return True
    bot = message.get_bot()
    return mentions_bot(message, bot.username) or replies_to_bot(message, bot.id)


def names_this_bot(message: Message) -> bool:
    """True for a command written out for this bot: `/cmd@botname`."""
    first_word = (message.text or "").split(maxsplit=1)[0] if message.text else ""
    return first_word.startswith("/") and first_word.casefold().endswith(
        f"@{message.get_bot().username}".casefold()
    )


def strip_mention(text: str, bot_username: str) -> str:
    """The text without `@botname` (any case), with the whitespace left behind tidied up."""
    without = re.sub(rf"@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE)
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in without.splitlines()]
    return "\n".join(lines).strip()


class _AddressedToBot(filters.MessageFilter):
    """PTB filter form of `is_addressed_to_bot`, for routing in `add_handlers`."""

    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return is_addressed_to_bot(message)


class _NamesThisBot(filters.MessageFilter):
    """PTB filter form of `names_this_bot`."""

    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return names_this_bot(message)


ADDRESSED_TO_BOT = _AddressedToBot(name="ADDRESSED_TO_BOT")
NAMES_THIS_BOT = _NamesThisBot(name="NAMES_THIS_BOT")
