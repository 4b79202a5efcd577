"""Starting afresh and answering again: what /new, /retry and the buttons under answers share.

A new conversation closes the person's open one in this chat; their next message starts the next.
Answering again marks the answers to the newest question superseded (kept, but hidden from the model)
and writes a new one, so the model never builds on an answer the person threw away.
"""

from __future__ import annotations

from bot.answering import generate_answer
from bot.incoming import ReplyTarget
from bot.outbox import Outbox
from bot.prompting import visible_turns
from bot.runtime import BotRuntime
from storage.types import ChatInfo, TurnStatus, UserInfo


async def start_new_conversation(runtime: BotRuntime, user: UserInfo, chat: ChatInfo) -> None:
    """Close the user's open conversation in this chat; their next message starts a new one."""
    await runtime.store.touch(user, chat)
    await runtime.store.new_conversation(chat.id, user.id)


async def regenerate_last_answer(
    runtime: BotRuntime, outbox: Outbox, conversation_id: int, target: ReplyTarget
) -> bool:
    """Supersede the answer to the newest question and write it again; False if there is no question."""
    if not await supersede_last_answer(runtime, conversation_id):
        return False
    await generate_answer(runtime, outbox, conversation_id, target)
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
