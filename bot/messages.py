"""Handlers for what people send: photos, image files, other files and text.

Each handler only reads the message (`bot.incoming`) and hands the request to the inbox, which
stores it and queues its work behind the conversation's earlier messages (`Inbox.accept` is called
before the handler's first `await`, which fixes the order); the answer itself is written by
`bot.answering` (`answer_question`).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot import texts
from bot.addressing import strip_mention
from bot.answering import answer_message
from bot.downloads import image_source
from bot.incoming import IncomingMessage, conversation_key, incoming_message, reply_target
from bot.outbox import Outbox
from bot.runtime import BotRuntime, runtime_of


async def on_image(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or an image file: answer about it, following the caption if there is one."""
    message = update.effective_message
    caption = strip_mention(message.caption or "", context.bot.username)
    incoming = incoming_message(message, caption or texts.DEFAULT_IMAGE_INSTRUCTION)
    await runtime_of(context).inbox.accept(update, conversation_key(message), incoming)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text: answer in the context of the whole conversation so far.

    A reply to a photo (anyone's) brings that photo into the question; a bare mention replying to a
    photo asks for it to be described, and in groups the description quotes the photo.
    """
    message = update.effective_message
    text = strip_mention(message.text or "", context.bot.username)
    replied = message.reply_to_message
    photo = image_source(replied) if replied else None
    if not text and photo is None:
        await message.reply_text(texts.EMPTY_QUESTION)
        return
    target = reply_target(message)
    if photo is not None and not text:
        target = target.quoting(replied.message_id)
    incoming = incoming_message(
        message,
        text or texts.DEFAULT_IMAGE_INSTRUCTION,
        images=(photo,) if photo is not None else None,
        target=target,
    )
    await runtime_of(context).inbox.accept(update, conversation_key(message), incoming)


async def answer_question(runtime: BotRuntime, outbox: Outbox, incoming: IncomingMessage) -> None:
    """The work of a stored question: store it, then answer it (the answer ends the work)."""
    await answer_message(runtime, outbox, incoming, ends_the_work=True)


async def on_other_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file, media, place, contact, poll… anything but an image: say what we can read."""
    await update.effective_message.reply_text(texts.ONLY_IMAGES)


async def on_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command the bot does not have, sent to it (not to another bot in a group): point to /help."""
    await update.effective_message.reply_text(texts.UNKNOWN_COMMAND)
