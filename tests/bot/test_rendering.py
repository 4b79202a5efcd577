"""An answer shown while it grows (`AnswerPreview`) and then delivered (`Delivery`), driven through a
real telegram.Bot against the Bot API stand-in, the way `bot.answering` drives them.

Intervals are shrunk so the suite stays fast; the stand-in's flood limits stay on unless a test says
why it widens one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.ext import AIORateLimiter, ExtBot

from bot import previews
from bot.answering import AnswerOutcome
from bot.delivery import Delivery
from bot.incoming import ReplyTarget
from bot.previews import AnswerPreview
from standin.telegram.flood import Window
from standin.telegram.server import BotApiStandIn
from standin.telegram.state import ChatHandle

MARKUP = InlineKeyboardMarkup([[InlineKeyboardButton("Retry", callback_data="retry")]])
LONG_ANSWER = "\n\n".join(
    " ".join(f"Paragraph {p} sentence {s} says something about the picture." for s in range(12))
    for p in range(14)
)  # about 9,600 characters: three messages


@pytest.fixture
async def bot(bot_api: BotApiStandIn):
    async with Bot(bot_api.token, base_url=bot_api.base_url,
                   base_file_url=bot_api.base_file_url) as real_bot:
        yield real_bot


def answer_in(bot: Bot, chat_id: int, *, is_private: bool, reply_to: int | None = None,
              topic: int | None = None, min_interval_s: float = 0.05,
              group_min_interval_s: float = 0.05) -> tuple[AnswerPreview, Delivery]:
    """One answer's preview and delivery (fast intervals unless a test asks for production ones)."""
    target = ReplyTarget(chat_id, is_private, reply_to_message_id=reply_to, message_thread_id=topic)
    delivery = Delivery(bot, target, min_interval_s=min_interval_s)
    return AnswerPreview(delivery, group_min_interval_s=group_min_interval_s), delivery


async def finish(preview: AnswerPreview, delivery: Delivery, text: str,
                 markup: InlineKeyboardMarkup | None = None) -> list[int]:
    """End the answer as `bot.answering` does: close the preview, then deliver the final text."""
    await preview.close()
    return await delivery.deliver(text, markup)


async def user_message(bot_api: BotApiStandIn, chat: ChatHandle, user_id: int = 501) -> int:
    message = await bot_api.send_text(chat, bot_api.user(user_id), "what is in the picture?")
    return message["message_id"]


def writes(bot_api: BotApiStandIn, *methods: str) -> list:
    wanted = {m.lower() for m in methods}
    return [call for call in bot_api.calls if call.method.lower() in wanted]


def without_whitespace(text: str) -> str:
    return re.sub(r"\s", "", text)


async def test_private_answer_streams_drafts_then_sends_the_final_text_as_a_reply(bot, bot_api):
    chat = bot_api.private_chat(501)
    asked = await user_message(bot_api, chat)
    preview, delivery = answer_in(bot, chat.id, is_private=True, reply_to=asked)
    async with preview:
        preview.update("A red")
        await bot_api.wait_for(lambda: len(bot_api.drafts(chat)) == 1)
        preview.update("A red square on")
        await bot_api.wait_for(lambda: len(bot_api.drafts(chat)) == 2)
        ids = await finish(preview, delivery, "A red square on white.", MARKUP)

    assert bot_api.drafts(chat) == ["A red", "A red square on"]
    draft_ids = {call.params["draft_id"] for call in bot_api.calls_to("sendMessageDraft")}
    assert len(draft_ids) == 1 and 0 not in draft_ids
    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id]
    assert message.text == "A red square on white." and message.edits == []
    assert message.reply_to_message_id == asked
    assert message.buttons == [("Retry", "retry")]
    assert all("parse_mode" not in call.params for call in bot_api.calls)


async def test_group_answer_is_a_reply_edited_as_it_grows_and_finished_with_markup(bot, bot_api):
    chat = bot_api.group_chat(-100500)
    asked = await user_message(bot_api, chat)
    preview, delivery = answer_in(bot, chat.id, is_private=False, reply_to=asked)
    async with preview:
        preview.update("Two")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        preview.update("Two cats")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat)[0].text == "Two cats")
        ids = await finish(preview, delivery, "Two cats sleeping.", MARKUP)

    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id]
    assert message.history == ["Two", "Two cats", "Two cats sleeping."]
    assert message.reply_to_message_id == asked
    assert message.buttons == [("Retry", "retry")]
    assert bot_api.calls_to("sendMessageDraft") == []


async def test_fast_updates_become_few_writes_spaced_by_the_interval(bot, bot_api):
    chat = bot_api.group_chat(-100501)
    preview, delivery = answer_in(bot, chat.id, is_private=False, min_interval_s=0.05, group_min_interval_s=0.25)
    text = ""
    async with preview:
        started = time.monotonic()
        for word in range(100):  # about 1.2 s of a fast model
            text += f" w{word}"
            preview.update(text)
            await asyncio.sleep(0.012)
        streamed_for = time.monotonic() - started
        await finish(preview, delivery, text)

    stream = writes(bot_api, "sendMessage", "editMessageText")[:-1]  # the last one is the final
    assert 2 <= len(stream) <= 2 + streamed_for / 0.25, f"{len(stream)} writes for 100 updates"
    gaps = [later.time - earlier.time for earlier, later in zip(stream, stream[1:])]
    assert min(gaps) >= 0.24
    assert bot_api.bot_messages(chat)[0].text == text.strip()


async def test_a_stalled_draft_is_sent_again_before_it_expires(bot, bot_api, monkeypatch):
    monkeypatch.setattr(previews, "DRAFT_KEEPALIVE_S", 0.15)
    chat = bot_api.private_chat(510)
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    async with preview:
        preview.update("Thinking about it")
        deadline = time.monotonic() + 3.0  # ~20 keep-alive periods: room for a loaded machine
        while len(bot_api.drafts(chat)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await finish(preview, delivery, "Thought about it.")
    assert len(bot_api.drafts(chat)) >= 3
    assert set(bot_api.drafts(chat)) == {"Thinking about it"}


async def test_unchanged_text_is_not_sent_again(bot, bot_api):
    chat = bot_api.private_chat(502)
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    async with preview:
        for _ in range(10):
            preview.update("Same words")
            await asyncio.sleep(0.02)
        preview.update("Same words  ")  # only trailing whitespace differs
        await asyncio.sleep(0.15)
        await finish(preview, delivery, "Same words")
    assert bot_api.drafts(chat) == ["Same words"]


async def test_default_private_interval_stays_within_telegrams_flood_limits(bot, bot_api):
    chat = bot_api.private_chat(503)
    preview, delivery = answer_in(bot, chat.id, is_private=True, min_interval_s=1.0)  # as in production
    text = ""
    async with preview:
        started = time.monotonic()
        while time.monotonic() - started < 2.2:
            text += " token"
            preview.update(text)
            await asyncio.sleep(0.02)
        ids = await finish(preview, delivery, text + " end.")
    assert bot_api.served_429s == 0
    assert 2 <= len(bot_api.drafts(chat)) <= 4
    assert [m.text for m in bot_api.bot_messages(chat)] == [(text + " end.").strip()]
    assert len(ids) == 1


async def test_429_while_streaming_is_obeyed_and_the_final_text_still_arrives(bot, bot_api):
    chat = bot_api.group_chat(-100502)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    async with preview:
        preview.update("First words")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        bot_api.fail_next("editMessageText", 429, "Too Many Requests: retry after 1", retry_after=1)
        update_durations = []
        for step in range(20):
            started = time.monotonic()
            preview.update(f"First words and more {step}")
            update_durations.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
        ids = await finish(preview, delivery, "First words and more, finally.")

    assert max(update_durations) < 0.05, "update() waited for Telegram"
    edits = bot_api.calls_to("editMessageText")
    refused = next(call for call in edits if call.status == 429)
    after = [call for call in edits if call.time > refused.time]
    assert after and after[0].time - refused.time >= 0.95, "wrote again before retry_after passed"
    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id] and message.text == "First words and more, finally."


async def test_final_message_is_delivered_after_repeated_429s(bot, bot_api):
    chat = bot_api.private_chat(504)
    bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1,
                      times=2)
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    async with preview:
        ids = await finish(preview, delivery, "Delivered anyway.")
    assert [m.text for m in bot_api.bot_messages(chat)] == ["Delivered anyway."]
    assert len(ids) == 1 and bot_api.served_429s == 2


async def test_429_is_survived_when_ptbs_rate_limiter_retries_it_itself(bot_api):
    chat = bot_api.group_chat(-100503)
    limited = ExtBot(bot_api.token, base_url=bot_api.base_url,
                     base_file_url=bot_api.base_file_url,
                     rate_limiter=AIORateLimiter(max_retries=2))
    async with limited:
        bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        preview, delivery = answer_in(limited, chat.id, is_private=False)
        async with preview:
            preview.update("Hello")
            await asyncio.sleep(0.1)
            ids = await finish(preview, delivery, "Hello there.")
    messages = bot_api.bot_messages(chat)
    assert [m.text for m in messages] == ["Hello there."], "the 429 lost or duplicated a message"
    assert ids == [messages[0].message_id] and bot_api.served_429s == 1


async def test_final_text_equal_to_the_shown_text_is_not_an_error(bot, bot_api):
    chat = bot_api.group_chat(-100504)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    async with preview:
        preview.update("Exactly this.")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        ids = await finish(preview, delivery, "Exactly this.")
    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id] and message.text == "Exactly this."
    assert any("not modified" in e.description for e in bot_api.served_errors)


async def test_long_group_answer_freezes_full_messages_and_continues_in_new_replies(bot, bot_api):
    # Each freeze costs an extra edit; widen the group window so this test is about splitting.
    bot_api.flood_limits.group_chat = Window(100, 60.0)
    chat = bot_api.group_chat(-100505)
    asked = await user_message(bot_api, chat)
    preview, delivery = answer_in(bot, chat.id, is_private=False, reply_to=asked)
    async with preview:
        for end in range(1500, 6001, 1500):
            preview.update(LONG_ANSWER[:end])
            await asyncio.sleep(0.08)
        # Still streaming: the first message is already full and final, the rest is a new reply.
        first, second = await bot_api.wait_for_bot_message(chat, count=2, timeout=5)
        assert len(first.text) <= 4096 and first.text.endswith(".")
        assert LONG_ANSWER.startswith(first.text)
        assert second.text == LONG_ANSWER[:6000][len(first.text):].strip()
        ids = await finish(preview, delivery, LONG_ANSWER)

    messages = bot_api.bot_messages(chat)
    assert ids == [m.message_id for m in messages] and len(messages) == 3
    assert messages[0].text == first.text, "a frozen message was edited again"
    assert all(len(m.text) <= 4096 for m in messages)
    assert all(m.reply_to_message_id == asked for m in messages)
    assert all(m.text.endswith(".") for m in messages), "a message was cut mid-sentence"
    assert without_whitespace("".join(m.text for m in messages)) == without_whitespace(LONG_ANSWER)


async def test_429_on_freezing_a_full_message_neither_loses_nor_repeats_text(bot, bot_api):
    bot_api.flood_limits.group_chat = Window(100, 60.0)
    chat = bot_api.group_chat(-100511)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    preview.update(LONG_ANSWER[:3000])
    await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
    bot_api.fail_next("editMessageText", 429, "Too Many Requests: retry after 1", retry_after=1)
    # The live message must now be frozen, and that edit is refused.
    preview.update(LONG_ANSWER[:6000])
    await bot_api.wait_for(lambda: len(bot_api.bot_messages(chat)) == 2, timeout=5)
    ids = await finish(preview, delivery, LONG_ANSWER)
    messages = bot_api.bot_messages(chat)
    assert ids == [m.message_id for m in messages] and len(messages) == 3
    assert bot_api.served_429s == 1
    assert without_whitespace("".join(m.text for m in messages)) == without_whitespace(LONG_ANSWER)


async def test_long_private_answer_is_sent_as_several_messages_with_markup_on_the_last(
    bot, bot_api
):
    chat = bot_api.private_chat(505)
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    async with preview:
        preview.update(LONG_ANSWER[:3000])
        ids = await finish(preview, delivery, LONG_ANSWER, MARKUP)
    messages = bot_api.bot_messages(chat)
    assert ids == [m.message_id for m in messages] and len(messages) == 3
    assert all(len(m.text) <= 4096 for m in messages)
    assert [bool(m.buttons) for m in messages] == [False, False, True]
    assert without_whitespace("".join(m.text for m in messages)) == without_whitespace(LONG_ANSWER)


async def test_blocked_bot_stops_quietly_without_raising(bot, bot_api, caplog):
    chat = bot_api.private_chat(506)
    chat.blocked = True
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    with caplog.at_level(logging.INFO, logger="bot.delivery"):
        async with preview:
            preview.update("Nobody will see this")
            await asyncio.sleep(0.1)
            ids = await finish(preview, delivery, "Nobody will see this either.")
    assert ids == []
    assert any(e.error_code == 403 for e in bot_api.served_errors)
    assert any("blocked" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    calls_after = len(bot_api.calls)
    preview.update("more")
    await asyncio.sleep(0.1)
    assert len(bot_api.calls) == calls_after


async def test_bot_removed_from_a_group_mid_stream_stops_writing_and_does_not_raise(bot, bot_api):
    chat = bot_api.group_chat(-100509)
    # Not entered with `async with`: no typing task, so only the streaming meets the 403.
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    preview.update("First part")
    await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
    chat.blocked = True
    for step in range(15):
        preview.update(f"First part and more {step}")
        await asyncio.sleep(0.02)
    ids = await finish(preview, delivery, "First part and more, finally.")
    assert ids == []
    assert [e.error_code for e in bot_api.served_errors] == [403], "kept writing after a 403"


async def test_refused_drafts_fall_back_to_editing_a_message(bot, bot_api):
    chat = bot_api.private_chat(507)
    bot_api.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID")
    preview, delivery = answer_in(bot, chat.id, is_private=True)
    async with preview:
        preview.update("Partial")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        ids = await finish(preview, delivery, "Partial, then whole.")
    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id]
    assert message.history == ["Partial", "Partial, then whole."]
    assert len(bot_api.calls_to("sendMessageDraft")) == 1


async def test_empty_text_is_never_sent(bot, bot_api):
    chat = bot_api.group_chat(-100506)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    async with preview:
        preview.update("")
        preview.update(" \n ")
        await asyncio.sleep(0.15)
        ids = await finish(preview, delivery, "   ")
    assert ids == []
    assert writes(bot_api, "sendMessage", "editMessageText", "sendMessageDraft") == []


async def test_typing_indicator_is_kept_up_in_the_topic_until_the_answer_is_finished(
    bot, bot_api, monkeypatch
):
    monkeypatch.setattr(previews, "TYPING_REFRESH_S", 0.1)
    chat = bot_api.group_chat(-100507, is_forum=True)
    topic = bot_api.create_topic(chat, "Pictures")
    preview, delivery = answer_in(bot, chat.id, is_private=False, topic=topic)
    async with preview:
        await asyncio.sleep(0.35)
        await finish(preview, delivery, "Done.")
        actions = bot_api.calls_to("sendChatAction")
        await asyncio.sleep(0.3)
    assert len(actions) >= 3
    assert all(c.params["action"] == "typing" and c.params["message_thread_id"] == topic
               for c in actions)
    assert len(bot_api.calls_to("sendChatAction")) == len(actions), "typing went on after finish"
    assert bot_api.bot_messages(chat)[0].message_thread_id == topic


async def test_group_typing_stops_once_the_growing_message_is_visible(bot, bot_api, monkeypatch):
    monkeypatch.setattr(previews, "TYPING_REFRESH_S", 0.05)
    chat = bot_api.group_chat(-100510)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    async with preview:
        await asyncio.sleep(0.2)
        preview.update("Visible")
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        await asyncio.sleep(0.1)  # a typing call already in flight may still land
        typing_so_far = len(bot_api.calls_to("sendChatAction"))
        for step in range(10):
            preview.update(f"Visible and growing {step}")
            await asyncio.sleep(0.03)
        await finish(preview, delivery, "Visible and grown.")
    assert typing_so_far >= 2
    assert len(bot_api.calls_to("sendChatAction")) == typing_so_far


async def test_failure_keeps_the_partial_text_and_adds_the_apology(bot, bot_api):
    chat = bot_api.group_chat(-100508)
    preview, delivery = answer_in(bot, chat.id, is_private=False)
    outcome = AnswerOutcome(text="The picture shows")
    async with preview:
        preview.update(outcome.text)
        await bot_api.wait_for(lambda: bot_api.bot_messages(chat))
        outcome.fail("Sorry, the model stopped.")
        ids = await finish(preview, delivery, outcome.message())
    [message] = bot_api.bot_messages(chat)
    assert ids == [message.message_id]
    assert message.text == "The picture shows\n\nSorry, the model stopped."
    assert message.buttons == []


async def test_cancelled_caller_leaves_no_background_writes(bot, bot_api, monkeypatch):
    monkeypatch.setattr(previews, "TYPING_REFRESH_S", 0.05)
    chat = bot_api.private_chat(509)

    async def answer() -> None:
        preview, _ = answer_in(bot, chat.id, is_private=True)
        async with preview:
            preview.update("Half an")
            await asyncio.sleep(10)

    task = asyncio.create_task(answer())
    await bot_api.wait_for(lambda: bot_api.drafts(chat))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    calls_after = len(bot_api.calls)
    await asyncio.sleep(0.2)
    assert len(bot_api.calls) == calls_after
