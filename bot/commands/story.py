"""/story [theme]: a short creative story inspired by a photo, written with sampling on.

The photo is the command's own (caption), the one it replies to, or else the last image of the
conversation. Temperature and top_p come from STORY_TEMPERATURE / STORY_TOP_P; the storyteller mode's
preamble is used when that mode is installed.
"""

from __future__ import annotations

from bot import texts
from bot.answering import AnswerOptions, answer_message
from bot.incoming import TaskCall
from bot.prompting import visible_turns
from bot.outbox import Outbox
from bot.runtime import BotRuntime
from bot.tasks import reply_to_call
from model.types import GenerationParams

STORY_MODE = "storyteller"


def story_instruction(theme: str) -> str:
    return texts.STORY_INSTRUCTION + (texts.STORY_THEME.format(theme=theme) if theme else "")


async def conversation_has_image(runtime: BotRuntime, call: TaskCall) -> bool:
    """Whether the asker's current conversation shows the model an image a story could be about."""
    conversation = await runtime.store.active_conversation(call.chat.id, call.user.id)
    return any(turn.images for turn in visible_turns(await runtime.store.history(conversation.id)))


async def story_task(runtime: BotRuntime, outbox: Outbox, call: TaskCall) -> None:
    """Stream a story about the request's photo (or the conversation's last one)."""
    if not call.images and not await conversation_has_image(runtime, call):
        await reply_to_call(outbox, call, texts.STORY_USAGE)
        return
    settings = runtime.settings
    params = GenerationParams(
        max_new_tokens=settings.max_new_tokens,
        do_sample=True,
        temperature=settings.story_temperature,
        top_p=settings.story_top_p,
    )
    options = AnswerOptions(params=params, mode=STORY_MODE, can_regenerate=False)
    await answer_message(runtime, outbox, call.question(story_instruction(call.argument)), options)
