"""/describe: describe a photo for the chat — the one the command replies to, or its own photo.

In groups the description quotes the photo itself, so everyone sees what it is about. Text after the
command is the question to answer about the photo instead of the default description request.
"""

from __future__ import annotations

from bot import texts
from bot.answering import answer_message
from bot.incoming import TaskCall
from bot.outbox import Outbox
from bot.runtime import BotRuntime
from bot.tasks import reply_to_call


async def describe_task(runtime: BotRuntime, outbox: Outbox, call: TaskCall) -> None:
    """Answer about the request's photo, or explain how to ask."""
    if not call.images:
        await reply_to_call(outbox, call, texts.DESCRIBE_USAGE)
        return
    question = call.argument or texts.DEFAULT_IMAGE_INSTRUCTION
    await answer_message(runtime, outbox, call.question(question, answer_the_photo=True))
