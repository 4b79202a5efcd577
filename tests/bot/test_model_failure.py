"""A model failure costs one answer, never the bot: a specific apology, the question kept, and the next
message answered as usual."""

from __future__ import annotations

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, runtime

USER_ID = 5150


async def test_model_crash_gets_an_apology_keeps_the_question_and_the_bot_keeps_serving(
    bot_api, start_bot, monkeypatch
):
    application = await start_bot()
    model = runtime(application).model.loaded.model
    norm = type(model.model.norm)  # every text forward goes through it, whichever path runs the layers
    real_forward = norm.forward

    def broken_forward(self, *args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered (simulated)")

    chat = bot_api.private_chat(USER_ID)
    user = bot_api.user(USER_ID)
    monkeypatch.setattr(norm, "forward", broken_forward)
    await bot_api.send_photo(chat, user, image_bytes("orange"), caption="What is this?")
    [apology] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)

    assert apology.text == texts.GENERATION_FAILED
    assert "CUDA" not in apology.text and "Traceback" not in apology.text
    store = runtime(application).store
    conversation = await store.active_conversation(chat.id, USER_ID)
    question, failed_answer = await store.history(conversation.id)
    assert (question.text, len(question.images)) == ("What is this?", 1)
    assert failed_answer.status is TurnStatus.FAILED

    monkeypatch.setattr(norm, "forward", real_forward)
    await bot_api.send_text(chat, user, "And now?")
    answers = await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)
    *_, newest = await store.history(conversation.id)
    assert newest.role == "assistant" and newest.status is TurnStatus.COMPLETE
    assert answers[-1].message_id in newest.message_ids
