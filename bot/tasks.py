"""What the image tasks (/caption, /classify, /story, /describe) share: reading one use of a command.

A task can be asked for three ways: a photo whose caption starts with the command, a command sent as a
reply to a photo (anyone's), or an album whose caption is the command. `TaskCall` is that request with
the Telegram details settled: the text after the command, the images meant, and where to answer.
Each task is then one `async (runtime, bot, call) -> None`, run in the asker's conversation queue.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import Bot, Message, Update
from telegram.ext import ContextTypes

from bot.answering import IncomingMessage, ReplyTarget, reply_parameters
from bot.downloads import ImageSource, image_source
from bot.messages import queue_for_conversation, reply_target
from bot.runtime import BotRuntime, runtime_of
from bot.telegram_info import chat_info, is_private, sender_info

# "/name", "/name@bot", then the argument (which may span lines and keep its commas).
_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<argument>.*))?\Z", re.DOTALL
)


@dataclass(frozen=True)
class TaskCall:
    """One request for a task, from a command message, a captioned photo or an album."""

    message: Message  # the message that carries the command
    argument: str  # the text after the command, stripped
    images: tuple[ImageSource, ...]  # the images meant, in order; empty when none was given
    message_ids: tuple[int, ...]  # the person's messages that make up the request
    photo_message_id: int | None = None  # the photo replied to, when the image came from a reply

    def target(self, *, answer_the_photo: bool = False) -> ReplyTarget:
        """Where to answer: in groups, quote the command (or the photo it replied to, if asked)."""
        target = reply_target(self.message)
        if answer_the_photo and self.photo_message_id is not None and not target.is_private:
            return ReplyTarget(
                chat_id=target.chat_id,
                is_private=False,
                reply_to_message_id=self.photo_message_id,
                message_thread_id=target.message_thread_id,
            )
        return target

    def question(self, text: str, *, answer_the_photo: bool = False) -> IncomingMessage:
        """The user turn this request becomes: its images and the instruction the model sees."""
        return IncomingMessage(
            user=sender_info(self.message),
            chat=chat_info(self.message.chat),
            text=text,
            message_id=self.message.message_id,
            target=self.target(answer_the_photo=answer_the_photo),
            images=self.images,
            message_ids=self.message_ids,
        )


Task = Callable[[BotRuntime, Bot, TaskCall], Awaitable[None]]


def parse_command(text: str | None, bot_username: str) -> tuple[str, str] | None:
    """(command name in lower case, argument) when `text` starts with a command for this bot."""
    match = _COMMAND.match((text or "").strip())
    if match is None or (match["bot"] and match["bot"].casefold() != bot_username.casefold()):
        return None
    return match["name"].casefold(), (match["argument"] or "").strip()


def replied_image(message: Message) -> tuple[ImageSource, int] | None:
    """The image of the message this one replies to (photo or image file), with that message's id."""
    replied = message.reply_to_message
    source = image_source(replied) if replied is not None else None
    return None if source is None else (source, replied.message_id)


def call_from_command(message: Message, bot_username: str) -> TaskCall:
    """A command sent as text: the image, if any, is the one it replies to."""
    _, argument = parse_command(message.text, bot_username) or ("", "")
    replied = replied_image(message)
    return TaskCall(
        message=message,
        argument=argument,
        images=(replied[0],) if replied else (),
        message_ids=(message.message_id,),
        photo_message_id=replied[1] if replied else None,
    )


def call_from_caption(message: Message, argument: str) -> TaskCall:
    """A photo (or image file) whose caption is the command."""
    own = image_source(message)
    return TaskCall(
        message=message,
        argument=argument,
        images=(own,) if own else (),
        message_ids=(message.message_id,),
    )


def command_handler(task: Task, name: str):
    """A PTB callback running `task` for a text command, in the sender's conversation queue."""

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        runtime = runtime_of(context)
        call = call_from_command(update.effective_message, context.bot.username)
        queue_for_conversation(update, context, lambda: task(runtime, context.bot, call), name=name)

    handle.__doc__ = f"/{name}: run the task in the sender's conversation, after their earlier messages."
    return handle


async def reply_to_call(bot: Bot, call: TaskCall, text: str) -> None:
    """A short reply to the request itself (usage help, a refusal)."""
    target = call.target()
    await bot.send_message(
        target.chat_id,
        text,
        reply_parameters=reply_parameters(target),
        message_thread_id=target.message_thread_id,
    )


def in_private_chat(call: TaskCall) -> bool:
    return is_private(call.message)
