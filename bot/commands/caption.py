"""/caption: a one-sentence caption of a photo (the photo's own caption, or a reply to a photo).

The model is asked for one sentence, greedily and with few new tokens; if it rambles on, only its
first sentence is shown and stored (so a follow-up question sees the caption the person saw).
"""

from __future__ import annotations

import re

from bot import texts
from bot.answering import AnswerOptions, answer_message
from bot.incoming import TaskCall
from bot.outbox import Outbox
from bot.runtime import BotRuntime
from bot.tasks import reply_to_call
from model.types import GenerationParams

CAPTION_MAX_NEW_TOKENS = 40
CAPTION_MODE = "captioner"  # the concise captioner preamble, when that mode is installed
# A sentence ends at . ! or ? (closing quotes/brackets kept) followed by a space or the end.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")


def first_sentence(text: str) -> str:
    """The first sentence of `text` (all of it, stripped, if no sentence has ended yet)."""
    stripped = text.strip()
    end = _SENTENCE_END.search(stripped)
    return stripped[: end.end()] if end else stripped


async def caption_task(runtime: BotRuntime, outbox: Outbox, call: TaskCall) -> None:
    """Caption the photo of the request, or explain how to ask."""
    if not call.images:
        await reply_to_call(outbox, call, texts.CAPTION_USAGE)
        return
    options = AnswerOptions(
        params=GenerationParams(max_new_tokens=min(CAPTION_MAX_NEW_TOKENS, runtime.settings.max_new_tokens)),
        mode=CAPTION_MODE,
        shape_text=first_sentence,
        can_regenerate=False,
    )
    await answer_message(runtime, outbox, call.question(texts.CAPTION_INSTRUCTION), options)
