"""Routing images that ask for more than a plain answer: captions that are task commands, and albums.

A photo whose caption starts with /caption, /classify, /story or /describe runs that task on the photo
(PTB's CommandHandler reads only message text, so captions are matched here). Album items are all
collected (in groups too: only one item carries the caption that may mention the bot) and answered
once as one user turn, or as one task when the caption is a task command.
"""

from __future__ import annotations

import logging

from telegram import Bot, Message, Update
from telegram.ext import ContextTypes, filters

from bot import texts
from bot.addressing import is_addressed_to_bot, strip_mention
from bot.albums import Album
from bot.answering import IncomingMessage, answer_message
from bot.commands.caption import caption_task
from bot.commands.classify import classify_task
from bot.commands.describe import describe_task
from bot.commands.story import story_task
from bot.downloads import image_source
from bot.messages import queue_for_conversation, reply_target
from bot.runtime import BotRuntime, runtime_of
from bot.tasks import Task, TaskCall, call_from_caption, parse_command
from bot.telegram_info import chat_info, sender_info

log = logging.getLogger(__name__)

TASKS: dict[str, Task] = {
    "caption": caption_task,
    "classify": classify_task,
    "story": story_task,
    "describe": describe_task,
}


def caption_task_command(message: Message) -> tuple[Task, str] | None:
    """The task (and its argument) that the message's caption asks for, if it is one for this bot."""
    parsed = parse_command(message.caption, message.get_bot().username)
    if parsed is None or parsed[0] not in TASKS:
        return None
    return TASKS[parsed[0]], parsed[1]


class _CaptionIsTask(filters.MessageFilter):
    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return bool(message.caption) and caption_task_command(message) is not None


class _InAlbum(filters.MessageFilter):
    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


CAPTION_IS_TASK = _CaptionIsTask(name="CAPTION_IS_TASK")
IN_ALBUM = _InAlbum(name="IN_ALBUM")


async def on_task_caption(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo captioned with a task command: run the task on that photo."""
    message = update.effective_message
    task, argument = caption_task_command(message)
    runtime = runtime_of(context)
    call = call_from_caption(message, argument)
    queue_for_conversation(update, context, lambda: task(runtime, context.bot, call), name="task")


async def on_album_item(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One photo of an album: the first one queues the album's answer, the rest just join it."""
    runtime = runtime_of(context)
    album = runtime.albums.add(update.effective_message)
    if album is not None:
        queue_for_conversation(
            update, context, lambda: answer_album(runtime, context.bot, album), name="album"
        )


async def answer_album(runtime: BotRuntime, bot: Bot, album: Album) -> None:
    """Once the album is complete: ignore it unless it is for the bot, else answer it as one turn."""
    items = await runtime.albums.collected(album)
    captioned = next((item for item in items if item.caption), items[0])
    task = caption_task_command(captioned) if captioned.caption else None
    if task is None and not any(is_addressed_to_bot(item) for item in items):
        return  # a group album nobody asked the bot about
    sources = tuple(source for source in map(image_source, items) if source is not None)
    limit = runtime.settings.max_images_in_prompt
    if len(sources) > limit:
        await bot.send_message(
            captioned.chat_id,
            texts.ALBUM_TOO_MANY.format(limit=limit, count=len(sources)),
            message_thread_id=reply_target(captioned).message_thread_id,
        )
        sources = sources[:limit]
    message_ids = tuple(item.message_id for item in items)
    if task is not None:
        run, argument = task
        call = TaskCall(message=captioned, argument=argument, images=sources, message_ids=message_ids)
        await run(runtime, bot, call)
        return
    question = strip_mention(captioned.caption or "", bot.username) or texts.DEFAULT_IMAGE_INSTRUCTION
    incoming = IncomingMessage(
        user=sender_info(captioned),
        chat=chat_info(captioned.chat),
        text=question,
        message_id=captioned.message_id,
        target=reply_target(captioned),
        images=sources,
        message_ids=message_ids,
    )
    await answer_message(runtime, bot, incoming)
