"""Handlers for what people send: photos, image files, other files and text.

Each handler only reads the message and queues the work behind the conversation's earlier messages
(`ConversationQueue.submit` is called before the first `await`, which fixes the order); the answer
itself is written by `bot.answering`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.addressing import strip_mention
from bot.answering import IncomingMessage, ReplyTarget, answer_message
from bot.conversation_queue import ConversationKey
from bot.downloads import image_source
from bot.runtime import runtime_of
from bot.telegram_info import chat_info, conversation_key, is_private, sender_info

log = logging.getLogger(__name__)


def reply_target(message: Message) -> ReplyTarget:
    """Private chats get plain messages; in groups the answer quotes the question (and stays in its topic)."""
    private = is_private(message)
    return ReplyTarget(
        chat_id=message.chat_id,
        is_private=private,
        reply_to_message_id=None if private else message.message_id,
        message_thread_id=message.message_thread_id if message.is_topic_message else None,
    )


def queue_for_conversation(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    work: Callable[[], Awaitable[object]],
    *,
    name: str,
    key: ConversationKey | None = None,
) -> None:
    """Run `work` after the sender's earlier messages in this chat; unknown errors go to the error handler.

    `key` names the conversation when the update's message is not the person's own (a button press
    arrives on the bot's message)."""
    message = update.effective_message
    runtime = runtime_of(context)

    async def job() -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - handed to the application's one error handler
            await context.application.process_error(update, error)

    runtime.answers.submit(key or conversation_key(message), job, name=name)


def incoming_message(message: Message, text: str) -> IncomingMessage:
    return IncomingMessage(
        user=sender_info(message),
        chat=chat_info(message.chat),
        text=text,
        message_id=message.message_id,
        target=reply_target(message),
        images=tuple(source for source in (image_source(message),) if source is not None),
    )


async def on_image(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or an image file: answer about it, following the caption if there is one."""
    message = update.effective_message
    caption = strip_mention(message.caption or "", context.bot.username)
    incoming = incoming_message(message, caption or texts.DEFAULT_IMAGE_INSTRUCTION)
    runtime = runtime_of(context)
    queue_for_conversation(
        update, context, lambda: answer_message(runtime, context.bot, incoming), name="image"
    )


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text: answer in the context of the whole conversation so far.

    A reply to a photo (anyone's) brings that photo into the question; a bare mention replying to a
    photo asks for it to be described, and in groups the description quotes the photo.
    """
    message = update.effective_message
    text = strip_mention(message.text or "", context.bot.username)
    replied = image_source(message.reply_to_message) if message.reply_to_message else None
    if not text and replied is None:
        await message.reply_text(texts.EMPTY_QUESTION)
        return
    incoming = incoming_message(message, text or texts.DEFAULT_IMAGE_INSTRUCTION)
    if replied is not None:
        target = incoming.target
        if not text and not target.is_private:
            target = replace(target, reply_to_message_id=message.reply_to_message.message_id)
        incoming = replace(incoming, images=(replied,), target=target)
    runtime = runtime_of(context)
    queue_for_conversation(
        update, context, lambda: answer_message(runtime, context.bot, incoming), name="text"
    )


async def on_other_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file, media, place, contact, poll… anything but an image: say what we can read."""
    await update.effective_message.reply_text(texts.ONLY_IMAGES)


async def on_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command the bot does not have, sent to it (not to another bot in a group): point to /help."""
    await update.effective_message.reply_text(texts.UNKNOWN_COMMAND)
