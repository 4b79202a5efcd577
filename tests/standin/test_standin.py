"""Tests of the Bot API stand-in itself, driven by python-telegram-bot's real Bot and Application.

If these pass, the bot's end-to-end tests see Telegram's behaviour: shapes PTB can parse, the errors
and exception classes PTB raises, long polling, downloads and flood limits.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import time
import warnings

import pytest
from PIL import Image
from telegram import (Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update)
from telegram.error import (BadRequest, ChatMigrated, Conflict, EndPointNotFound, Forbidden,
                            InvalidToken, RetryAfter, TelegramError)
from telegram.warnings import PTBDeprecationWarning
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from standin.telegram import BotApiStandIn, FloodLimits, StandInTimeout, Window, make_token, media
from tests.standin.fixtures import bot_api  # noqa: F401  (the fixture under test)

NOT_MODIFIED = "Message is not modified"


def png(width: int, height: int, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def retry_seconds(error: RetryAfter) -> float:
    """retry_after in seconds, whichever type this PTB version's setting gives it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        period = error.retry_after
    return period.total_seconds() if isinstance(period, dtm.timedelta) else float(period)


@pytest.fixture
async def bot(bot_api: BotApiStandIn):
    async with Bot(bot_api.token, base_url=bot_api.base_url,
                   base_file_url=bot_api.base_file_url) as real_bot:
        yield real_bot


async def test_get_me_describes_the_bot_user(bot: Bot, bot_api: BotApiStandIn):
    me = await bot.get_me()
    assert me.is_bot and me.username == "idefics_test_bot" and me.id == bot_api.bot_user.id


async def test_a_wrong_token_is_refused_as_invalid_token(bot_api: BotApiStandIn):
    stranger = Bot(make_token(42), base_url=bot_api.base_url)
    with pytest.raises(InvalidToken):
        await stranger.initialize()


async def test_unknown_method_is_not_found(bot: Bot):
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": 1})


async def test_user_message_arrives_with_command_entity_and_is_confirmed_by_offset(
        bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(101, "Ann")
    await bot_api.send_text(chat, bot_api.users[101], "/start@idefics_test_bot hello")
    (update,) = await bot.get_updates(timeout=0)
    assert update.effective_message.text == "/start@idefics_test_bot hello"
    assert update.effective_message.parse_entities(["bot_command"])
    assert update.effective_user.first_name == "Ann"
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()


async def test_long_poll_waits_for_a_message_and_returns_nothing_after_timeout(
        bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(102)
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert time.monotonic() - started >= 0.9
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    await bot_api.send_text(chat, bot_api.users[102], "late hello")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates] == ["late hello"]


async def test_sent_message_is_recorded_and_an_identical_edit_is_not_modified(
        bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(103)
    sent = await bot.send_message(chat.id, "first")
    await bot.edit_message_text("second ", chat.id, sent.message_id)
    with pytest.raises(BadRequest, match=NOT_MODIFIED):
        await bot.edit_message_text("second", chat.id, sent.message_id)
    (record,) = bot_api.bot_messages(chat)
    assert (record.text, record.history) == ("second", ["first", "second"])
    assert sent.from_user.id == bot_api.bot_user.id and sent.date.year >= 2025


async def test_editing_a_missing_message_is_refused(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(104)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat.id, 999)


async def test_editing_without_reply_markup_removes_the_keyboard(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(105)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="retry")]])
    sent = await bot.send_message(chat.id, "answer", reply_markup=keyboard)
    await bot.edit_message_text("answer, longer", chat.id, sent.message_id)
    assert bot_api.bot_messages(chat)[0].buttons == []


async def test_injected_429_raises_retry_after_with_its_seconds(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(106)
    bot_api.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(chat.id, "hi")
    assert retry_seconds(raised.value) == 7
    await bot.send_message(chat.id, "hi")  # the fault was used up
    assert bot_api.served_429s == 1 and bot_api.served_errors[0].injected


async def test_injected_403_raises_forbidden(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(107)
    bot_api.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(chat.id, "hi")


async def test_text_limits_and_unknown_chats_are_refused(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(108)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(chat.id, "a" * 4097)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(chat.id, "  \n ")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(555, "hi")
    await bot.send_message(chat.id, "a" * 4096)


async def test_unbalanced_markup_cannot_be_parsed(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(109)
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(chat.id, "<b>half", parse_mode="HTML")
    with pytest.raises(BadRequest, match="reserved"):
        await bot.send_message(chat.id, "Done.", parse_mode="MarkdownV2")
    sent = await bot.send_message(chat.id, "<b>bold</b> &amp; plain", parse_mode="HTML")
    assert sent.text == "bold & plain" and sent.entities[0].type == "bold"


async def test_reply_to_a_missing_message_is_refused_unless_allowed(
        bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(110)
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(chat.id, "hi", reply_parameters=ReplyParameters(77))
    sent = await bot.send_message(
        chat.id, "hi", reply_parameters=ReplyParameters(77, allow_sending_without_reply=True))
    assert sent.reply_to_message is None


async def test_user_reply_embeds_the_replied_bot_message(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.group_chat(-1001, "Friends")
    ann = bot_api.user(111, "Ann")
    question = await bot_api.send_text(chat, ann, "@idefics_test_bot what is it?")
    answer = await bot.send_message(chat.id, "A cat.",
                                    reply_parameters=ReplyParameters(question["message_id"]))
    await bot_api.send_text(chat, ann, "why?", reply_to=answer.message_id)
    updates = await bot.get_updates(timeout=0)
    replied = updates[-1].message.reply_to_message
    assert replied.from_user.is_bot and replied.text == "A cat."
    assert bot_api.bot_messages(chat)[0].reply_to_message_id == question["message_id"]
    assert updates[0].message.entities[0].type == "mention"


async def test_photo_sizes_download_round_trip(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(112)
    message = await bot_api.send_photo(chat, bot_api.users[112], png(1000, 700), caption="What?")
    (update,) = await bot.get_updates(timeout=0)
    sizes = update.message.photo
    assert [s.width for s in sizes] == [90, 320, 800, 1000]
    assert sizes[-1].file_id == message["photo"][-1]["file_id"]
    data = await (await bot.get_file(sizes[-1].file_id)).download_as_bytearray()
    assert Image.open(io.BytesIO(bytes(data))).size == (1000, 700)
    await bot_api.send_text(chat, bot_api.users[112], "and now?", reply_to=message)
    later = await bot.get_updates(offset=update.update_id + 1, timeout=0)
    assert later[0].message.reply_to_message.photo[-1].file_id == sizes[-1].file_id


async def test_oversized_and_broken_files_fail_like_telegram(bot: Bot, bot_api: BotApiStandIn):
    huge = bot_api.add_file(b"x", reported_size=25 * 1024 * 1024)
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(huge.file_id)
    broken = bot_api.add_file(png(10, 10), extension=".png")
    broken.download_fails = True
    with pytest.raises(TelegramError):
        await (await bot.get_file(broken.file_id)).download_as_bytearray()


async def test_image_documents_and_albums_look_like_telegrams(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(113)
    ann = bot_api.users[113]
    await bot_api.send_document(chat, ann, png(50, 40), "cat.png", "image/png")
    album = await bot_api.send_album(chat, ann, [png(60, 60), png(70, 70, "blue")], "Which?", 1)
    updates = await bot.get_updates(timeout=0)
    assert updates[0].message.document.mime_type == "image/png"
    assert updates[0].message.document.thumbnail is not None
    assert len({u.message.media_group_id for u in updates[1:]}) == 1
    assert [u.message.caption for u in updates[1:]] == [None, "Which?"]
    assert [m["message_id"] for m in album] == [u.message.message_id for u in updates[1:]]


async def test_drafts_only_in_private_chats_with_nonzero_id(bot: Bot, bot_api: BotApiStandIn):
    private = bot_api.private_chat(114)
    group = bot_api.group_chat(-1002, "Group")
    assert await bot.send_message_draft(private.id, 5, "Thinking about")
    await bot.send_message_draft(private.id, 5, "Thinking about it")
    with pytest.raises(BadRequest):
        await bot.send_message_draft(group.id, 5, "no")
    with pytest.raises(BadRequest):
        await bot.send_message_draft(private.id, 0, "no")
    assert bot_api.drafts(private) == ["Thinking about", "Thinking about it"]


async def test_flood_limits_answer_429_after_a_burst(bot: Bot, bot_api: BotApiStandIn):
    private = bot_api.private_chat(115)
    group = bot_api.group_chat(-1003, "Busy group")
    for index in range(3):
        await bot.send_message(private.id, f"burst {index}")
    with pytest.raises(RetryAfter) as raised:
        await bot.send_message(private.id, "one too many")
    assert 1 <= retry_seconds(raised.value) <= 3
    for index in range(20):
        await bot.send_message(group.id, f"group {index}")
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("edited", group.id, bot_api.bot_messages(group)[0].message_id)
    assert bot_api.flood_429_count == 2 and bot_api.served_429s == 2


async def test_flood_limits_are_configurable():
    async with BotApiStandIn(flood_limits=FloodLimits(private_chat=Window(2, 60.0))) as server:
        async with Bot(server.token, base_url=server.base_url) as bot:
            chat = server.private_chat(122)
            await bot.send_message(chat.id, "one")
            await bot.send_message(chat.id, "two")
            with pytest.raises(RetryAfter) as raised:
                await bot.send_message(chat.id, "three")
    assert 55 <= retry_seconds(raised.value) <= 60


async def test_flood_limits_can_be_switched_off(bot_api: BotApiStandIn):
    bot_api.flood_limits.enabled = False
    async with Bot(bot_api.token, base_url=bot_api.base_url) as bot:
        chat = bot_api.private_chat(116)
        for index in range(8):
            await bot.send_message(chat.id, f"message {index}")
    assert len(bot_api.bot_messages(chat)) == 8


async def test_button_press_is_a_callback_query_answered_once(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(117)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("New", callback_data="new")]])
    sent = await bot.send_message(chat.id, "answer", reply_markup=keyboard)
    with pytest.raises(ValueError):
        await bot_api.press_button(chat, bot_api.users[117], sent.message_id, "missing")
    await bot_api.press_button(chat, bot_api.users[117], sent.message_id, "new")
    (update,) = await bot.get_updates(timeout=0)
    assert update.callback_query.data == "new"
    assert update.callback_query.message.message_id == sent.message_id
    await update.callback_query.answer("Done")
    with pytest.raises(BadRequest, match="Query is too old"):
        await update.callback_query.answer("again")
    assert bot_api.callback_answers[update.callback_query.id]["text"] == "Done"


async def test_forum_topic_messages_carry_their_thread(bot: Bot, bot_api: BotApiStandIn):
    forum = bot_api.group_chat(-1004, "Forum", is_forum=True)
    topic = bot_api.create_topic(forum, "Cats")
    await bot_api.send_text(forum, bot_api.user(118), "@idefics_test_bot hi",
                            message_thread_id=topic)
    (update,) = await bot.get_updates(timeout=0)
    assert update.message.message_thread_id == topic and update.message.is_topic_message
    assert update.message.reply_to_message.forum_topic_created.name == "Cats"
    await bot.send_message(forum.id, "hello", message_thread_id=topic)
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(forum.id, "lost", message_thread_id=topic + 50)
    assert [m.text for m in bot_api.bot_messages(forum, thread_id=topic)] == ["hello"]


async def test_commands_and_deletion_round_trip(bot: Bot, bot_api: BotApiStandIn):
    await bot.set_my_commands([("start", "Say hello"), ("new", "Fresh start")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "new"]
    with pytest.raises(BadRequest):
        await bot.set_my_commands([("Bad Command", "spaces")])
    chat = bot_api.private_chat(119)
    sent = await bot.send_message(chat.id, "to delete")
    assert await bot.delete_message(chat.id, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(chat.id, sent.message_id)
    assert bot_api.bot_messages(chat) == []


async def test_a_second_poller_terminates_the_first_with_conflict(bot: Bot,
                                                                  bot_api: BotApiStandIn):
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    async with Bot(bot_api.token, base_url=bot_api.base_url) as second_instance:
        assert await second_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict):
        await asyncio.wait_for(first, 2)


async def test_bot_uploads_become_photos_and_documents(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(121)
    photo = await bot.send_photo(chat.id, png(400, 300), caption="<i>yours</i>",
                                 parse_mode="HTML")
    assert [s.width for s in photo.photo] == [90, 320, 400]
    assert photo.caption == "yours" and photo.caption_entities[0].type == "italic"
    document = await bot.send_document(chat.id, b"log line", filename="log.txt")
    data = await (await bot.get_file(document.document.file_id)).download_as_bytearray()
    assert bytes(data) == b"log line" and document.document.file_name == "log.txt"
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(chat.id, photo.photo[-1].file_id, caption="c" * 1025)
    assert [m.kind for m in bot_api.bot_messages(chat)] == ["photo", "document"]
    assert (await bot.get_chat(chat.id)).type == "private"


async def test_privacy_mode_groups_deliver_only_what_is_meant_for_the_bot(
        bot: Bot, bot_api: BotApiStandIn):
    group = bot_api.group_chat(-1005, "Private-ish", privacy_mode=True)
    ann = bot_api.user(123, "Ann")
    await bot_api.send_text(group, ann, "just chatting")
    await bot_api.send_text(group, ann, "/help@other_bot")
    await bot_api.send_text(group, ann, "hey @IDEFICS_test_bot")
    await bot_api.send_text(group, ann, "/new")
    delivered = [u.message.text for u in await bot.get_updates(timeout=0)]
    assert delivered == ["hey @IDEFICS_test_bot", "/new"]


async def test_user_edits_arrive_as_edited_messages(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(124)
    sent = await bot_api.send_text(chat, bot_api.users[124], "wat is this")
    await bot_api.edit_text(chat, bot_api.users[124], sent, "what is this")
    updates = await bot.get_updates(timeout=0)
    assert updates[0].message.text == "wat is this"
    assert updates[-1].edited_message.text == "what is this"
    assert updates[-1].edited_message.message_id == sent["message_id"]


async def test_wait_for_gives_up_with_the_latest_calls(bot_api: BotApiStandIn):
    with pytest.raises(StandInTimeout):
        await bot_api.wait_for(lambda: False, timeout=0.1)


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answers every text with itself, as a reply."""
    await update.effective_message.reply_text(f"echo: {update.effective_message.text}")


async def test_real_application_polls_replies_and_does_not_see_old_updates_again(
        bot_api: BotApiStandIn):
    chat = bot_api.private_chat(120)
    for attempt in ("first", "second"):
        application = (ApplicationBuilder().token(bot_api.token).base_url(bot_api.base_url)
                       .base_file_url(bot_api.base_file_url).build())
        application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
        application.add_handler(CommandHandler("start", echo))
        async with application:
            await application.updater.start_polling(poll_interval=0, timeout=1)
            await application.start()
            await bot_api.send_text(chat, bot_api.users[120], attempt)
            await bot_api.wait_for_bot_message(chat, predicate=lambda m: attempt in m.text)
            await application.updater.stop()
            await application.stop()
    assert [m.text for m in bot_api.bot_messages(chat)] == ["echo: first", "echo: second"]
    assert bot_api.calls_to("deleteWebhook") and not bot_api.served_errors


async def test_other_message_kinds_parse_as_ptb_reads_them(bot: Bot, bot_api: BotApiStandIn):
    chat = bot_api.private_chat(120)
    contents = [media.sticker(bot_api.files), media.voice(bot_api.files), media.audio(bot_api.files),
                media.video(bot_api.files), media.video_note(bot_api.files), media.animation(bot_api.files),
                media.location(), media.venue(), media.contact(), media.dice(), media.poll()]
    for content in contents:
        await bot_api.send_content(chat, bot_api.users[120], content)
    updates = await bot.get_updates(timeout=0)
    assert [u.message.effective_attachment is not None for u in updates] == [True] * len(contents)
    assert updates[5].message.animation and updates[5].message.document  # as Telegram sends GIFs


async def test_an_upgraded_group_refuses_writes_with_the_new_chat_id(bot: Bot, bot_api: BotApiStandIn):
    group = bot_api.basic_group(-121)
    supergroup = bot_api.migrate(group, -100121, by=bot_api.user(121))
    with pytest.raises(ChatMigrated) as raised:
        await bot.send_message(group.id, "hi")
    assert raised.value.new_chat_id == supergroup.id
    kinds = [(u.message.chat.id, u.message.migrate_to_chat_id, u.message.migrate_from_chat_id)
             for u in await bot.get_updates(timeout=0)]
    assert kinds == [(group.id, supergroup.id, None), (supergroup.id, None, group.id)]
