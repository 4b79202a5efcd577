"""End to end in a private chat: photos, image files, other files, follow-ups, restarts and failures."""

from __future__ import annotations

import hashlib

import pytest

from bot import texts
from model.types import ImagePart, TextPart
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

USER_ID = 1001


async def history_of(application, chat_id: int, user_id: int):
    """The user's current conversation, once every queued answer has been recorded."""
    await answers_settled(application)
    store = runtime(application).store
    conversation = await store.active_conversation(chat_id, user_id)
    return await store.history(conversation.id)


async def test_photo_without_caption_streams_drafts_then_sends_the_final_answer(bot_api, start_bot):
    # Paced so the stream is observable even when a busy machine generates all tokens at once.
    factory, _ = recording_factory(delay_s=0.1)
    application = await start_bot(model_service_factory=factory, max_new_tokens=16)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"))

    [answer] = await bot_api.wait_for_bot_message(chat)
    user_turn, assistant_turn = await history_of(application, chat.id, USER_ID)
    assert user_turn.text == texts.DEFAULT_IMAGE_INSTRUCTION
    assert len(user_turn.images) == 1
    assert assistant_turn.status is TurnStatus.COMPLETE
    assert answer.text == (assistant_turn.text.strip() or texts.EMPTY_ANSWER)
    assert answer.message_id in assistant_turn.message_ids
    drafts = bot_api.drafts(chat)
    assert drafts, "the growing answer should have been shown as drafts"
    assert all(answer.text.startswith(draft) for draft in drafts), (drafts, answer.text)
    assert "typing" in bot_api.chat_actions(chat)
    assert bot_api.served_429s == 0, "normal use stays inside Telegram's flood limits"


async def test_photo_caption_is_the_question_and_the_largest_size_is_downloaded(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    sent = await bot_api.send_photo(
        chat, bot_api.user(USER_ID), image_bytes("green", (320, 240)), caption="What colour?"
    )

    await bot_api.wait_for_bot_message(chat)
    user_turn = (await history_of(application, chat.id, USER_ID))[0]
    assert user_turn.text == "What colour?"
    largest = max(sent["photo"], key=lambda size: size["width"] * size["height"])
    [get_file] = bot_api.calls_to("getFile")
    assert get_file.params["file_id"] == largest["file_id"]


@pytest.mark.both_databases  # one of the end-to-end set run on PostgreSQL too
async def test_follow_up_after_a_restart_is_answered_with_the_earlier_image(bot_api, start_bot):
    factory, services = recording_factory()
    first = await start_bot(model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    photo = image_bytes("blue")
    await bot_api.send_photo(chat, user, photo, caption="What is this?")
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(first)
    await start_bot.stop(first)

    second = await start_bot(model_service_factory=factory)
    await bot_api.send_text(chat, user, "And what colour is it?")
    await bot_api.wait_for_bot_message(chat, count=2)

    follow_up = services[-1].conversations[-1]
    first_turn, _, last_turn = follow_up.turns
    [image] = [part for part in first_turn.parts if isinstance(part, ImagePart)]
    assert image.image.getpixel((5, 5))[2] > 200, "the blue photo from before the restart"
    stored_image = (await history_of(second, chat.id, USER_ID))[0].images[0]
    assert image.key == stored_image.sha256 == hashlib.sha256(stored_image.data).hexdigest()
    assert last_turn.parts == (TextPart("And what colour is it?"),)
    assert services[-1] is not services[0]


async def test_image_sent_as_a_file_is_answered_like_a_photo(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    png = image_bytes("yellow", fmt="PNG")
    await bot_api.send_document(chat, bot_api.user(USER_ID), png, "sun.png", "image/png", caption="Describe")

    [answer] = await bot_api.wait_for_bot_message(chat)
    user_turn, assistant_turn = await history_of(application, chat.id, USER_ID)
    assert user_turn.text == "Describe" and len(user_turn.images) == 1
    assert assistant_turn.status is TurnStatus.COMPLETE
    assert answer.text != texts.ONLY_IMAGES


async def test_a_file_that_is_not_an_image_gets_the_only_images_reply(bot_api, start_bot):
    factory, services = recording_factory()
    await start_bot(model_service_factory=factory)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_document(chat, bot_api.user(USER_ID), b"%PDF-1.4 ...", "report.pdf", "application/pdf")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.ONLY_IMAGES
    assert services[0].conversations == []


async def test_failed_download_apologises_and_keeps_the_question(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    bot_api.fail_next("getFile", 400, "Bad Request: file is temporarily unavailable")
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="Is this a cat?")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.IMAGE_DOWNLOAD_FAILED
    [user_turn] = await history_of(application, chat.id, USER_ID)
    assert user_turn.text == "Is this a cat?"
    assert user_turn.status is TurnStatus.FAILED


async def test_image_over_the_size_limit_is_refused_without_downloading(bot_api, start_bot):
    application = await start_bot(max_image_bytes=1000)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_document(
        chat, bot_api.user(USER_ID), image_bytes("red", (400, 400), "PNG"), "big.png", "image/png"
    )

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text.startswith("That image is too large")
    assert bot_api.calls_to("getFile") == []
    [user_turn] = await history_of(application, chat.id, USER_ID)
    assert user_turn.status is TurnStatus.FAILED


async def test_unreadable_image_gets_a_specific_apology(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_document(chat, bot_api.user(USER_ID), b"\x89PNG not really", "broken.png", "image/png")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.IMAGE_UNREADABLE
    [user_turn] = await history_of(application, chat.id, USER_ID)
    assert user_turn.status is TurnStatus.FAILED and user_turn.images == ()


async def test_message_too_long_for_the_context_gets_the_new_or_shorter_apology(bot_api, start_bot):
    application = await start_bot()
    chat = bot_api.private_chat(USER_ID)
    long_text = " ".join(f"w{i}q{i * 7 % 13}z" for i in range(700))[:4000]
    await bot_api.send_text(chat, bot_api.user(USER_ID), long_text)

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.PROMPT_TOO_LONG
    user_turn, assistant_turn = await history_of(application, chat.id, USER_ID)
    assert user_turn.text == long_text
    assert assistant_turn.status is TurnStatus.FAILED


async def test_unknown_command_points_to_help(bot_api, start_bot):
    await start_bot()
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/teleport")
    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.UNKNOWN_COMMAND


async def test_retention_job_is_scheduled_and_keeps_fresh_conversations(bot_api, start_bot):
    application = await start_bot(conversation_retention_days=30)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "hello")
    await bot_api.wait_for_bot_message(chat)
    [job] = application.job_queue.get_jobs_by_name("retention-purge")

    await job.run(application)
    assert [turn.role for turn in await history_of(application, chat.id, USER_ID)] == ["user", "assistant"]


async def test_unexpected_failure_is_logged_with_traceback_and_the_user_gets_a_plain_apology(
    bot_api, start_bot, caplog
):
    application = await start_bot()
    start_bot.expect_errors_from("bot.app")
    await runtime(application).store.stop()  # the database goes away under the running bot
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "hello?")

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text == texts.UNEXPECTED_ERROR
    [logged] = [record for record in caplog.records if record.name == "bot.app" and record.exc_info]
    assert logged.exc_info[0].__name__ == "StorageError"
    assert "Traceback" not in reply.text and "StorageError" not in reply.text
    await bot_api.send_text(chat, bot_api.user(USER_ID), "/help")
    await bot_api.wait_for_bot_message(chat, count=2)  # still running
