"""What a restart finds: answers a crash cut short, with INTERRUPTED_ANSWERS=note, and messages that
waited too long (STALE_MESSAGE_AGE_S). The crash itself, with real processes, is in test_restarts."""

from __future__ import annotations

import asyncio

from telegram import Bot

from bot import texts
from bot.incoming import IncomingMessage, ReplyTarget
from bot.request_codec import QUESTION, encode
from bot.request_runner import INTERRUPTED
from storage.schema import utc_now
from storage.store import Store
from storage.types import ChatInfo, NewRequest, TurnStatus, UserInfo
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime

USER_ID, GROUP_ID = 6601, -1006601


async def leave_a_crashed_answer(bot_api, database_url: str) -> tuple[dict, int]:
    """What a process killed mid-answer leaves: the stored question, its PENDING answer, and the
    truncated preview it had sent to the group (linked to the answer as it appeared)."""
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID, "Ann")
    question = await bot_api.send_text(group, user, "@idefics_test_bot tell me about rivers")
    bot_api.updates.drop_pending()  # the crashed process had fetched it
    async with Bot(bot_api.token, base_url=bot_api.base_url) as crashed_bot:
        preview = await crashed_bot.send_message(GROUP_ID, "Rivers are long bo")
    asked = IncomingMessage(
        user=UserInfo(USER_ID, "Ann"), chat=ChatInfo(GROUP_ID, "supergroup", "Test group"),
        text="tell me about rivers", target=ReplyTarget(GROUP_ID, False, question["message_id"]),
        message_ids=(question["message_id"],),
    )
    async with Store(database_url) as store:
        request = await store.inbox.add(
            NewRequest(1, GROUP_ID, USER_ID, QUESTION, encode(asked), utc_now())
        )
        conversation = await store.active_conversation(GROUP_ID, USER_ID)
        await store.add_user_turn(conversation.id, asked.text, message_ids=asked.message_ids,
                                  inbox_item_id=request.id)
        answer = await store.open_assistant_turn(conversation.id, inbox_item_id=request.id)
        await store.link_messages(answer.id, [preview.message_id])
    return question, preview.message_id


async def test_with_notes_a_crashed_answer_becomes_a_note_with_a_retry_button(
    bot_api, start_bot, database_url
):
    question, preview_id = await leave_a_crashed_answer(bot_api, database_url)
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory, interrupted_answers="note")

    await bot_api.wait_for(lambda: bot_api.store.bot[(GROUP_ID, preview_id)].text == texts.INTERRUPTED_NOTE)
    await answers_settled(application)
    note = bot_api.store.bot[(GROUP_ID, preview_id)]
    assert [label for label, _ in note.buttons] == [texts.RETRY_BUTTON]
    assert services[0].conversations == [], "not answered again unasked"
    store = runtime(application).store
    _, crashed = await store.history((await store.active_conversation(GROUP_ID, USER_ID)).id)
    assert (crashed.status, crashed.finish_reason) == (TurnStatus.FAILED, INTERRUPTED)

    await bot_api.press_button(bot_api.chats[GROUP_ID], bot_api.users[USER_ID], note, note.buttons[0][1])
    _, answer = await bot_api.wait_for_bot_message(GROUP_ID, count=2)
    await answers_settled(application)
    assert answer.reply_to_message_id == question["message_id"]
    *_, again = await store.history((await store.active_conversation(GROUP_ID, USER_ID)).id)
    assert again.status is TurnStatus.COMPLETE and again.message_ids == (answer.message_id,)


async def test_messages_that_waited_past_the_stale_age_are_told_not_answered(bot_api, start_bot):
    factory, _ = recording_factory(delay_s=0.25)
    application = await start_bot(model_service_factory=factory, max_new_tokens=200)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    sent = [await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")]
    sent += [await bot_api.send_text(chat, user, text) for text in ("second", "third")]
    await bot_api.wait_for(lambda: bot_api.drafts(chat))
    await start_bot.stop(application)  # the first was being answered, the others waited
    await asyncio.sleep(1.2)

    await start_bot(stale_message_age_s=1.0)
    _, *notices = await bot_api.wait_for_bot_message(chat, count=4)
    assert [notice.text for notice in notices] == [texts.NOT_ANSWERED_IN_TIME] * 3
    assert [notice.reply_to_message_id for notice in notices] == [message["message_id"] for message in sent]


async def test_with_notes_a_shutdown_leaves_a_retry_button_and_nothing_is_redone(bot_api, start_bot):
    factory, _ = recording_factory(delay_s=0.25)
    application = await start_bot(
        model_service_factory=factory, max_new_tokens=200, interrupted_answers="note"
    )
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_text(chat, user, "a long answer please")
    await bot_api.wait_for(lambda: bot_api.drafts(chat))
    await start_bot.stop(application)
    [note] = bot_api.bot_messages(chat)
    assert note.text.endswith(texts.CANCELLED_BY_SHUTDOWN_NOTE)
    assert [label for label, _ in note.buttons] == [texts.RETRY_BUTTON]

    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory, interrupted_answers="note")
    await bot_api.wait_quiet(quiet=1.0)
    assert services[0].conversations == [] and len(bot_api.bot_messages(chat)) == 1
    await bot_api.press_button(chat, user, note, note.buttons[0][1])
    [_, answer] = await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)
    *_, again = await runtime(application).store.history(
        (await runtime(application).store.active_conversation(chat.id, USER_ID)).id
    )
    assert again.status is TurnStatus.COMPLETE and again.message_ids == (answer.message_id,)
