"""/retry: write the last answer again; the old one is kept, marked superseded, and hidden from the model.

`regenerate_last_answer` is shared with the "Regenerate" button under answers.
"""

from __future__ import annotations

from telegram import Bot, Update
from telegram.ext import ContextTypes

from bot import texts
from bot.answer_keyboard import answer_keyboard
from bot.answering import ReplyTarget, generate_answer
from bot.messages import queue_for_conversation, reply_target
from bot.prompting import visible_turns
from bot.runtime import BotRuntime, runtime_of
from bot.telegram_info import sender_info
from storage.types import TurnStatus


async def retry_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Regenerate the answer to the newest user turn, in its turn behind any running answer."""
    message = update.effective_message
    runtime = runtime_of(context)

    async def regenerate() -> None:
        conversation = await runtime.store.active_conversation(message.chat_id, sender_info(message).id)
        if not await regenerate_last_answer(runtime, context.bot, conversation.id, reply_target(message)):
            await message.reply_text(texts.NOTHING_TO_RETRY)

    queue_for_conversation(update, context, regenerate, name="retry")


async def regenerate_last_answer(
    runtime: BotRuntime, bot: Bot, conversation_id: int, target: ReplyTarget
) -> bool:
    """Supersede the answer to the newest question and write it again; False if there is no question."""
    if not await supersede_last_answer(runtime, conversation_id):
        return False
    await generate_answer(runtime, bot, conversation_id, target, final_reply_markup=answer_keyboard())
    return True


async def supersede_last_answer(runtime: BotRuntime, conversation_id: int) -> bool:
    """Mark the answers after the newest visible user turn superseded; False if there is no such turn."""
    history = await runtime.store.history(conversation_id)
    user_turns = [turn for turn in visible_turns(history) if turn.role == "user"]
    if not user_turns:
        return False
    last_question = user_turns[-1]
    for turn in history:
        if (
            turn.role == "assistant"
            and turn.position > last_question.position
            and turn.status is TurnStatus.COMPLETE
        ):
            await runtime.store.set_turn_status(turn.id, TurnStatus.SUPERSEDED)
    return True
