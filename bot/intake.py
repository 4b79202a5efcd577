"""Routing images that ask for more than a plain answer: captions that are task commands, and albums.

A photo whose caption starts with a task command (/caption, /classify, /story, /describe) runs that
task on the photo (PTB's CommandHandler reads only message text, so captions are matched here). Album
items are all stored (in groups too: only one item carries the caption that may mention the bot) and
answered once as one user turn, or as one task when the caption is a task command
(`bot.albums` says when an album is complete). Which tasks exist is handed in by `bot.app`, so this
module knows no command module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from telegram import Message, Update
from telegram.ext import ContextTypes, filters

from bot import texts
from bot.addressing import is_addressed_to_bot, strip_mention
from bot.albums import collected_album
from bot.answering import answer_message
from bot.conversation_queue import ConversationKey
from bot.downloads import image_source
from bot.incoming import (
    AlbumItem,
    IncomingMessage,
    TaskCall,
    call_from_caption,
    chat_info,
    conversation_key,
    parse_command,
    reply_target,
    sender_info,
)
from bot.outbox import Outbox
from bot.request_codec import decode
from bot.runtime import BotRuntime, runtime_of
from bot.tasks import Task


class ImageIntake:
    """The handlers for task captions and album items, over a table of tasks by command name."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self._tasks = dict(tasks)
        self.caption_is_task = _CaptionIsTask(self)  # a PTB filter, for routing in `bot.app`

    def task_in_caption(self, message: Message) -> tuple[str, str] | None:
        """The task (its name and argument) the message's caption asks for, if it is one for this bot."""
        parsed = parse_command(message.caption, message.get_bot().username)
        if parsed is None or parsed[0] not in self._tasks:
            return None
        return parsed

    async def on_task_caption(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo captioned with a task command: run the task on that photo."""
        message = update.effective_message
        name, argument = self.task_in_caption(message)
        call = call_from_caption(message, name, argument)
        await runtime_of(context).inbox.accept(update, conversation_key(message), call)

    async def on_album_item(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One photo of an album: stored at once; the album is answered once it is complete."""
        message = update.effective_message
        task = self.task_in_caption(message) if message.caption else None
        item = AlbumItem(
            user=sender_info(message),
            chat=chat_info(message.chat),
            target=reply_target(message),
            message_id=message.message_id,
            image=image_source(message),
            caption=message.caption or "",
            addressed=is_addressed_to_bot(message),
            task=task[0] if task else None,
            argument=task[1] if task else "",
        )
        await runtime_of(context).inbox.accept(update, conversation_key(message), item)

    async def answer_album(self, runtime: BotRuntime, outbox: Outbox, first: AlbumItem) -> None:
        """The work of an album's first item: wait for the rest, then answer them all as one turn."""
        request = outbox.request
        key = ConversationKey(first.chat.id, first.user.id)
        rows = await collected_album(runtime.store.inbox, request, lambda: runtime.inbox.writes_done(key))
        items = [decode(row.kind, row.payload, row.chat_id) for row in rows]
        await self._answer_items(runtime, outbox, [item for item in items if isinstance(item, AlbumItem)])
        await runtime.store.inbox.finish([row.id for row in rows if row.id != request.id])

    async def _answer_items(self, runtime: BotRuntime, outbox: Outbox, items: Sequence[AlbumItem]) -> None:
        """Ignore the album unless it is for the bot, else answer it as one turn (or one task)."""
        captioned = next((item for item in items if item.caption), items[0])
        if captioned.task is None and not any(item.addressed for item in items):
            return  # a group album nobody asked the bot about
        sources = tuple(item.image for item in items if item.image is not None)
        limit = runtime.settings.max_images_in_prompt
        if len(sources) > limit:
            notice = texts.ALBUM_TOO_MANY.format(limit=limit, count=len(sources))
            await outbox.send(captioned.target.quoting(None), notice)
            sources = sources[:limit]
        message_ids = tuple(item.message_id for item in items)
        if captioned.task is not None:
            call = TaskCall(
                task=captioned.task, user=captioned.user, chat=captioned.chat, reply=captioned.target,
                argument=captioned.argument, images=sources, message_ids=message_ids,
            )
            await self._tasks[captioned.task](runtime, outbox, call)
            return
        question = strip_mention(captioned.caption, outbox.bot.username) or texts.DEFAULT_IMAGE_INSTRUCTION
        incoming = IncomingMessage(
            user=captioned.user, chat=captioned.chat, text=question, target=captioned.target,
            message_ids=message_ids, images=sources,
        )
        await answer_message(runtime, outbox, incoming)

    async def run_task(self, runtime: BotRuntime, outbox: Outbox, call: TaskCall) -> None:
        """The work of a stored task request."""
        await self._tasks[call.task](runtime, outbox, call)


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
