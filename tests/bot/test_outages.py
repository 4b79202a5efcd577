"""Bot API outages: answers are retried for as long as real outages last, never recorded as delivered
when Telegram did not take them, and delivered once Telegram is back, before the next answer."""

from __future__ import annotations

import asyncio

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, eventually, image_bytes, recording_factory, runtime

USER_ID, GROUP_ID = 6101, -1006101
QUICK_RETRIES = dict(delivery_max_backoff_s=0.2)  # the real backoff grows to DELIVERY_MAX_BACKOFF_S


async def history(application, chat_id: int, user_id: int = USER_ID):
    store = runtime(application).store
    return await store.history((await store.active_conversation(chat_id, user_id)).id)


async def test_an_answer_is_delivered_through_twenty_429s_in_a_row(bot_api, start_bot):
    application = await start_bot()
    start_bot.expect_errors_from("telegram.ext.AIORateLimiter")  # PTB logs each 429 it gave up on
    chat = bot_api.private_chat(USER_ID)
    bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, times=20)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat, timeout=60)
    await answers_settled(application)
    *_, turn = await history(application, chat.id)
    assert (turn.status, turn.message_ids) == (TurnStatus.COMPLETE, (answer.message_id,))
    assert bot_api.served_429s >= 20 and len(bot_api.bot_messages(chat)) == 1


async def test_an_answer_is_delivered_through_twelve_server_errors_in_a_row(bot_api, start_bot):
    application = await start_bot(**QUICK_RETRIES)
    chat = bot_api.private_chat(USER_ID)
    bot_api.fail_next("sendMessage", 500, "Internal Server Error", times=12)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")

    [answer] = await bot_api.wait_for_bot_message(chat, timeout=60)
    await answers_settled(application)
    *_, turn = await history(application, chat.id)
    assert (turn.status, turn.message_ids) == (TurnStatus.COMPLETE, (answer.message_id,))
    assert [e.error_code for e in bot_api.served_errors if e.injected] == [500] * 12


async def test_a_group_answer_whose_edits_keep_failing_leaves_no_truncated_preview(bot_api, start_bot):
    factory, _ = recording_factory(delay_s=0.3)  # slow enough that a preview is shown first
    application = await start_bot(model_service_factory=factory, max_new_tokens=12, **QUICK_RETRIES)
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    await bot_api.send_text(group, user, "@idefics_test_bot describe a sunset")
    await bot_api.wait_for(lambda: bot_api.bot_messages(group))
    bot_api.fail_next("editMessageText", 500, "Internal Server Error", times=10)

    await answers_settled(application)
    await bot_api.wait_quiet()
    *_, turn = await history(application, group.id)
    [shown] = bot_api.bot_messages(group)
    assert turn.status is TurnStatus.COMPLETE and turn.message_ids == (shown.message_id,)
    assert shown.text == (turn.text.strip() or texts.EMPTY_ANSWER) and shown.buttons
    [preview] = [m for m in bot_api.bot_messages(group, include_deleted=True) if m.deleted]
    assert preview.message_id not in turn.message_ids


async def test_an_answer_telegram_would_not_take_waits_undelivered_and_arrives_before_the_next(
    bot_api, start_bot
):
    factory, services = recording_factory()
    application = await start_bot(
        model_service_factory=factory, delivery_give_up_after_s=1.0, undelivered_retry_interval_s=0.5,
        inbox_lease_s=1.5, **QUICK_RETRIES,
    )
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    bot_api.start_outage(500, "Internal Server Error", methods={"sendMessage"})
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="first")

    async def first_answer():
        turns = await history(application, chat.id)
        return turns[1] if len(turns) > 1 and turns[1].status is not TurnStatus.PENDING else None

    waiting = await eventually(first_answer)
    assert waiting.status is TurnStatus.UNDELIVERED, "never recorded as delivered what Telegram refused"
    await bot_api.send_text(chat, user, "second")

    async def both_waiting() -> bool:
        return await runtime(application).store.inbox.waiting_count() == 2

    await eventually(both_waiting)
    await asyncio.sleep(1.5)  # time enough to answer it, were it allowed to go first
    assert len(services[0].conversations) == 1, "the next answer waits for the undelivered one"

    bot_api.end_outage()
    first, second = await bot_api.wait_for_bot_message(chat, count=2, timeout=30)
    await answers_settled(application)
    question, answer, follow_up, next_answer = await history(application, chat.id)
    assert (answer.status, answer.message_ids) == (TurnStatus.COMPLETE, (first.message_id,))
    assert first.text == (answer.text.strip() or texts.EMPTY_ANSWER) and first.buttons
    assert (next_answer.status, next_answer.message_ids) == (TurnStatus.COMPLETE, (second.message_id,))
    assert len(services[0].conversations[-1].turns) == 3, "the next answer builds on the delivered one"
