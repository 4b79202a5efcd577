"""What the image tasks (/caption, /classify, /story, /describe) share: their shape, and their two doors.

A task is one `async (runtime, bot, call) -> None`, run in the asker's conversation queue; its
`TaskCall` (bot.incoming) is the request with the Telegram details settled. It is asked for as a text
command (`command_handler`, here) or as the caption of a photo or an album (`bot.intake`); both are
wired in `bot.app` from one table of tasks, so the two doors never disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Bot, Update
from telegram.ext import ContextTypes

from bot.delivery import send_reply
from bot.incoming import TaskCall, call_from_command
from bot.runtime import BotRuntime, queue_for_conversation, runtime_of

Task = Callable[[BotRuntime, Bot, TaskCall], Awaitable[None]]
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]


def command_handler(task: Task, name: str) -> Handler:
    """A PTB callback running `task` for a text command, in the sender's conversation queue."""

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        runtime = runtime_of(context)
        call = call_from_command(update.effective_message, context.bot.username)
        queue_for_conversation(update, context, lambda: task(runtime, context.bot, call), name=name)

    handle.__doc__ = f"/{name}: run the task in the sender's conversation, after their earlier messages."
    return handle


async def reply_to_call(bot: Bot, call: TaskCall, text: str) -> None:
    """A short reply to the request itself (usage help, a refusal)."""
    await send_reply(bot, call.target(), text)
