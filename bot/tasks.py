"""What the image tasks (/caption, /classify, /story, /describe) share: their shape, and their two doors.

A task is one `async (runtime, outbox, call) -> None`, run in the asker's conversation, in turn; its
`TaskCall` (bot.incoming) is the request with the Telegram details settled, and `outbox` is where its
replies go. It is asked for as a text command (`command_handler`, here) or as the caption of a photo
or an album (`bot.intake`); both are wired in `bot.app` from one table of tasks, so the two doors
never disagree, and both store the request in the inbox (`bot.inbox`) before it waits for its turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ContextTypes

from bot.incoming import TaskCall, call_from_command, conversation_key
from bot.outbox import Outbox
from bot.runtime import BotRuntime, runtime_of

Task = Callable[[BotRuntime, Outbox, TaskCall], Awaitable[None]]
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]


def command_handler(name: str) -> Handler:
    """A PTB callback storing a text command for the task `name`, to run in the sender's conversation."""

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        call = call_from_command(message, name, context.bot.username)
        await runtime_of(context).inbox.accept(update, conversation_key(message), call)

    handle.__doc__ = f"/{name}: run the task in the sender's conversation, after their earlier messages."
    return handle


async def reply_to_call(outbox: Outbox, call: TaskCall, text: str) -> None:
    """A short reply to the request itself (usage help, a refusal)."""
    await outbox.send(call.target(), text)
