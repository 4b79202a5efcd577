"""Routing images that ask for more than a plain answer: captions that are task commands, and albums.

A photo whose caption starts with a task command (/caption, /classify, /story, /describe) runs that
task on the photo (PTB's CommandHandler reads only message text, so captions are matched here). Album
items are all collected (in groups too: only one item carries the caption that may mention the bot)
and answered once as one user turn, or as one task when the caption is a task command. Which tasks
exist is handed in by `bot.app`, so this module knows no command module.
"""

from __future__ import annotations

from collections.abc import Mapping

from telegram import Bot, Message, Update
from telegram.ext import ContextTypes, filters

from bot import texts
from bot.addressing import is_addressed_to_bot, strip_mention
from bot.albums import Album
from bot.answering import answer_message
from bot.delivery import send_reply
from bot.downloads import image_source
from bot.incoming import TaskCall, call_from_caption, incoming_message, parse_command, reply_target
from bot.runtime import BotRuntime, queue_for_conversation, runtime_of
from bot.tasks import Task


class ImageIntake:
    """The handlers for task captions and album items, over a table of tasks by command name."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self._tasks = dict(tasks)
        self.caption_is_task = _CaptionIsTask(self)  # a PTB filter, for routing in `bot.app`

    def task_in_caption(self, message: Message) -> tuple[Task, str] | None:
        """The task (and its argument) that the message's caption asks for, if it is one for this bot."""
        parsed = parse_command(message.caption, message.get_bot().username)
        if parsed is None or parsed[0] not in self._tasks:
            return None
        return self._tasks[parsed[0]], parsed[1]

    async def on_task_caption(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo captioned with a task command: run the task on that photo."""
        message = update.effective_message
        task, argument = self.task_in_caption(message)
        runtime = runtime_of(context)
        call = call_from_caption(message, argument)
        queue_for_conversation(update, context, lambda: task(runtime, context.bot, call), name="task")

    async def on_album_item(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One photo of an album: the first one queues the album's answer, the rest just join it."""
        runtime = runtime_of(context)
        album = runtime.albums.add(update.effective_message)
        if album is not None:
            queue_for_conversation(
                update, context, lambda: self._answer_album(runtime, context.bot, album), name="album"
            )

    async def _answer_album(self, runtime: BotRuntime, bot: Bot, album: Album) -> None:
        """Once the album is complete: ignore it unless it is for the bot, else answer it as one turn."""
        items = await runtime.albums.collected(album)
        captioned = next((item for item in items if item.caption), items[0])
        task = self.task_in_caption(captioned) if captioned.caption else None
        if task is None and not any(is_addressed_to_bot(item) for item in items):
            return  # a group album nobody asked the bot about
        sources = tuple(source for source in map(image_source, items) if source is not None)
        limit = runtime.settings.max_images_in_prompt
        if len(sources) > limit:
            notice = texts.ALBUM_TOO_MANY.format(limit=limit, count=len(sources))
            await send_reply(bot, reply_target(captioned).quoting(None), notice)
            sources = sources[:limit]
        message_ids = tuple(item.message_id for item in items)
        if task is not None:
            run, argument = task
            call = TaskCall(message=captioned, argument=argument, images=sources, message_ids=message_ids)
            await run(runtime, bot, call)
            return
        question = strip_mention(captioned.caption or "", bot.username) or texts.DEFAULT_IMAGE_INSTRUCTION
        await answer_message(
            runtime, bot, incoming_message(captioned, question, images=sources, message_ids=message_ids)
        )


class _CaptionIsTask(filters.MessageFilter):
    __slots__ = ("_intake",)

    def __init__(self, intake: ImageIntake) -> None:
        super().__init__(name="CAPTION_IS_TASK")
        self._intake = intake

    def filter(self, message: Message) -> bool:
        return bool(message.caption) and self._intake.task_in_caption(message) is not None


class _InAlbum(filters.MessageFilter):
    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


IN_ALBUM = _InAlbum(name="IN_ALBUM")
