"""A demanding user against the whole bot: odd messages, odd senders, odd files and odd timing.

Whatever arrives, the bot must never crash, never show a traceback, never stay silent when a reply is
due (and never speak in a group when nobody asked), and never log an ERROR for something expected.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from bot import texts
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, image_bytes, recording_factory, runtime
from standin.telegram import media
from standin.telegram.state import UserHandle

USER_ID = 8101
GROUP_ID = -1008101
ANONYMOUS_ADMIN = UserHandle(1087968824, "Group", "GroupAnonymousBot", is_bot=True)

NOT_IMAGES = {
    "sticker": lambda files: media.sticker(files),
    "voice": lambda files: media.voice(files),
    "audio": lambda files: media.audio(files),
    "video": lambda files: media.video(files),
    "video_note": lambda files: media.video_note(files),
    "animation": lambda files: media.animation(files),
    "location": lambda files: media.location(),
    "venue": lambda files: media.venue(),
    "contact": lambda files: media.contact(),
    "dice": lambda files: media.dice(),
    "poll": lambda files: media.poll(),
}


def no_tracebacks_in(messages) -> None:
    for message in messages:
        assert "Traceback" not in message.text and "Error" not in message.text, message.text


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
async def test_anything_but_an_image_in_a_private_chat_gets_the_only_images_reply(bot_api, start_bot, kind):
    await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_content(chat, user, NOT_IMAGES[kind](bot_api.files))

    [reply] = await bot_api.wait_for_bot_message(chat, timeout=10)
    assert reply.text == texts.ONLY_IMAGES


async def test_non_images_in_a_group_are_ignored_unless_they_reply_to_the_bot(bot_api, start_bot):
    application = await start_bot()
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    for kind in ("sticker", "location", "dice", "poll", "voice"):
        await bot_api.send_content(group, user, NOT_IMAGES[kind](bot_api.files))
    await bot_api.send_text(group, user, "@idefics_test_bot what is 2+2?")
    [answer] = await bot_api.wait_for_bot_message(group)
    await answers_settled(application)

    await bot_api.send_content(group, user, media.location(), reply_to=answer.message_id)
    await bot_api.wait_for_bot_message(group, count=2)
    await bot_api.wait_quiet()
    later = bot_api.bot_messages(group)[1:]
    assert [message.text for message in later] == [texts.ONLY_IMAGES]


async def test_a_message_sent_on_behalf_of_a_chat_without_a_from_user_is_answered(bot_api, start_bot):
    """Anonymous admins and channels post with `sender_chat`; some servers omit the fake `from`."""
    application = await start_bot()
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    message = bot_api.new_message(group, user)
    del message["from"]
    message.update(sender_chat=group.wire(), text="@idefics_test_bot hello",
                   entities=[{"type": "mention", "offset": 0, "length": 17}])
    bot_api.store.add(message)
    bot_api.updates.push("message", message)

    [answer] = await bot_api.wait_for_bot_message(group)
    no_tracebacks_in([answer])
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)
    await answers_settled(application)


async def test_the_anonymous_group_admin_gets_answers_about_photos(bot_api, start_bot):
    application = await start_bot()
    group = bot_api.group_chat(GROUP_ID)
    bot_api.users[ANONYMOUS_ADMIN.id] = ANONYMOUS_ADMIN
    await bot_api.send_photo(group, ANONYMOUS_ADMIN, image_bytes("red"), caption="@idefics_test_bot what is it?")

    [answer] = await bot_api.wait_for_bot_message(group)
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)
    await answers_settled(application)


async def test_an_unknown_command_addressed_to_the_bot_in_a_group_is_answered(bot_api, start_bot):
    await start_bot()
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    await bot_api.send_text(group, user, "/frobnicate")  # maybe another bot's: not ours to answer
    await bot_api.send_text(group, user, "/caption@other_bot")
    await bot_api.send_text(group, user, "/frobnicate@idefics_test_bot")

    [reply] = await bot_api.wait_for_bot_message(group)
    await bot_api.wait_quiet()
    assert [m.text for m in bot_api.bot_messages(group)] == [texts.UNKNOWN_COMMAND]
    assert reply.reply_to_message_id is not None


async def test_updates_with_fields_and_kinds_this_bot_version_does_not_know_are_survived(bot_api, start_bot):
    await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    bot_api.updates.push("some_future_update", {"id": 1, "shiny": True})
    message = bot_api.new_message(chat, user)
    message.update(text="hello there", some_future_field={"nested": [1, 2]})
    bot_api.store.add(message)
    bot_api.updates.push("message", message)

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)


def png_bomb(side: int = 30000) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def corrupt_jpeg() -> bytes:
    whole = image_bytes("red", (200, 200))
    return whole[: len(whole) // 2]


def square(color: str, fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


UNREADABLE = texts.IMAGE_UNREADABLE
TOO_MANY_PIXELS = "That image has too many pixels for me ({}; the limit is 64). Try a smaller one."


@pytest.mark.parametrize(
    ("data", "file_name", "mime_type", "refusal"),
    [
        (b"just some words, not a picture\n" * 20, "photo.jpg", "image/jpeg", UNREADABLE),
        (corrupt_jpeg(), "broken.jpg", "image/jpeg", UNREADABLE),
        (png_bomb(), "bomb.png", "image/png", TOO_MANY_PIXELS.format("over 179 megapixels")),
        (png_bomb(9000), "scan.png", "image/png", TOO_MANY_PIXELS.format("81 megapixels")),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 200, "IMG_0001.HEIC", "image/heic", UNREADABLE),
        (square("blue", "WEBP"), "pic.webp", "image/webp", None),
        (square("green", "GIF"), "pic.gif", "image/gif", None),
        (square("white", "PNG", (1, 1)), "dot.png", "image/png", None),
        (square("black", "PNG", (10000, 100)), "strip.png", "image/png", None),
    ],
    ids=["text-as-jpeg", "corrupt-jpeg", "decompression-bomb", "huge-scan", "heic", "webp", "gif", "1x1",
         "10000x100"],
)
async def test_image_files_of_every_kind_get_an_answer_or_a_clear_refusal(
    bot_api, start_bot, data, file_name, mime_type, refusal
):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_document(chat, user, data, file_name, mime_type, caption="what is this?")

    [reply] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    no_tracebacks_in([reply])
    if refusal is None:
        assert reply.text not in (texts.IMAGE_UNREADABLE, texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)
        assert not reply.text.startswith("That image has too many pixels")
    else:
        assert reply.text == refusal
    store = runtime(application).store
    [question, *_] = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert question.text == "what is this?", "the person's words are kept either way"


@pytest.mark.parametrize(
    "text",
    [
        "x" * 4096,
        "<b>bold?</b> *stars* _under_ [a](http://x) `code` &amp; <i>",
        "ما هذا؟ \u202eRTL override\u202c 😀👍🏽👨‍👩‍👧",
    ],
    ids=["4096-chars", "markup-looking", "rtl-and-emoji"],
)
async def test_texts_of_any_length_and_markup_are_answered_as_plain_text(bot_api, start_bot, text):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, text)

    _, reply = await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)
    no_tracebacks_in([reply])
    assert reply.text != texts.UNEXPECTED_ERROR


async def test_a_caption_that_is_only_the_mention_asks_for_a_description(bot_api, start_bot):
    application = await start_bot()
    group, user = bot_api.group_chat(GROUP_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(group, user, image_bytes("red"), caption="  @idefics_test_bot  ")
    await bot_api.wait_for_bot_message(group)
    await bot_api.send_text(group, user, "@idefics_test_bot")

    _, nudge = await bot_api.wait_for_bot_message(group, count=2)
    assert nudge.text == texts.EMPTY_QUESTION
    await answers_settled(application)
    store = runtime(application).store
    [question, _] = await store.history((await store.active_conversation(group.id, USER_ID)).id)
    assert question.text == texts.DEFAULT_IMAGE_INSTRUCTION


async def test_ten_fast_messages_are_all_answered_in_order(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    for number in range(10):
        await bot_api.send_text(chat, user, f"question {number}")

    await bot_api.wait_for_bot_message(chat, count=11, timeout=90)
    await answers_settled(application)
    store = runtime(application).store
    history = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    questions = [turn.text for turn in history if turn.role == "user"][1:]
    assert questions == [f"question {number}" for number in range(10)]
    assert all(turn.status is TurnStatus.COMPLETE for turn in history)


async def test_a_user_who_blocks_the_bot_mid_answer_costs_no_error(bot_api, start_bot):
    factory, _ = recording_factory(delay_s=0.2)
    application = await start_bot(model_service_factory=factory, max_new_tokens=16)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    await bot_api.wait_for(lambda: bot_api.drafts(chat))
    chat.blocked = True
    await bot_api.send_content(chat, user, media.sticker(bot_api.files))  # sent just before blocking
    await answers_settled(application)
    await bot_api.wait_quiet()
    assert bot_api.bot_messages(chat) == []


async def test_two_members_asking_in_a_group_at_once_each_get_their_answer(bot_api, start_bot):
    application = await start_bot()
    group = bot_api.group_chat(GROUP_ID)
    ann, bob = bot_api.user(USER_ID, "Ann"), bot_api.user(USER_ID + 1, "Bob")
    asked = await asyncio.gather(
        bot_api.send_photo(group, ann, image_bytes("red"), caption="@idefics_test_bot colour?"),
        bot_api.send_photo(group, bob, image_bytes("blue"), caption="@idefics_test_bot shape?"),
    )
    answers = await bot_api.wait_for_bot_message(group, count=2, timeout=60)
    await answers_settled(application)
    assert sorted(a.reply_to_message_id for a in answers) == sorted(m["message_id"] for m in asked)


@pytest.mark.parametrize("mime_type", [None, "application/octet-stream"])
async def test_an_image_file_without_an_image_mime_type_is_read_by_its_name(bot_api, start_bot, mime_type):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    sent = await bot_api.send_document(chat, user, square("red", "PNG"), "holiday.png", "image/png",
                                       caption="what is this?")
    if mime_type is None:
        del sent["document"]["mime_type"]  # the field is optional in the Bot API
    else:
        sent["document"]["mime_type"] = mime_type  # the update is queued, not sent yet: amend it

    [reply] = await bot_api.wait_for_bot_message(chat)
    assert reply.text != texts.ONLY_IMAGES
    await answers_settled(application)
    store = runtime(application).store
    [question, *_] = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert len(question.images) == 1


async def test_an_answer_follows_a_group_that_was_upgraded_to_a_supergroup(bot_api, start_bot):
    application = await start_bot()
    group, user = bot_api.basic_group(-8101), bot_api.user(USER_ID)
    await bot_api.send_photo(group, user, image_bytes("red"), caption="@idefics_test_bot what is it?")
    supergroup = bot_api.migrate(group, GROUP_ID, by=user)  # before the bot wrote anything

    [answer] = await bot_api.wait_for_bot_message(supergroup)
    await answers_settled(application)
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.GENERATION_FAILED)


async def test_a_command_in_a_group_that_was_just_upgraded_is_not_lost_in_silence(bot_api, start_bot):
    await start_bot()
    group, user = bot_api.basic_group(-8101), bot_api.user(USER_ID)
    await bot_api.send_text(group, user, "/help")
    supergroup = bot_api.migrate(group, GROUP_ID, by=user)

    [reply] = await bot_api.wait_for_bot_message(supergroup)
    assert reply.text == texts.CHAT_UPGRADED


def press_on_unknown_message(bot_api, chat, user, data: str, *, inaccessible: bool = False) -> dict:
    """A press on a bot message this server no longer has (deleted, or from before a data loss);
    `inaccessible`: Telegram no longer shows the bot the message (date 0, no content)."""
    message = {"message_id": 999, "from": bot_api.bot_user.wire(), "chat": chat.wire(), "date": bot_api.now(),
               "text": "an old menu"}
    if inaccessible:
        message = {"message_id": 999, "chat": chat.wire(), "date": 0}
    query = {"id": str(next(bot_api._query_ids)), "from": user.wire(), "message": message,
             "chat_instance": "1", "data": data}
    bot_api.open_callback_queries.add(query["id"])
    bot_api.updates.push("callback_query", query)
    return query


@pytest.mark.parametrize(
    "data",
    ["mode:captioner", "settings:length:short", f"forget:yes:{USER_ID}", "forget:no:1", "answer:regenerate",
     "answer:new", "something:else"],
)
@pytest.mark.parametrize("inaccessible", [False, True], ids=["unknown", "inaccessible"])
async def test_a_press_on_a_message_the_bot_no_longer_has_is_answered_without_an_error(
    bot_api, start_bot, data, inaccessible
):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    query = press_on_unknown_message(bot_api, chat, user, data, inaccessible=inaccessible)

    await bot_api.wait_for(lambda: query["id"] in bot_api.callback_answers)
    await answers_settled(application)
    await bot_api.wait_quiet()
    sent = [m.text for m in bot_api.bot_messages(chat)]
    assert texts.UNEXPECTED_ERROR not in sent
    if data.startswith(("mode:", "settings:", "forget:yes")):  # the redrawn menu or result, sent anew
        assert len(sent) == 1 and sent[0] != "an old menu", sent


async def test_a_forwarded_photo_with_a_blank_caption_is_described(bot_api, start_bot):
    application = await start_bot()
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_content(chat, user, {
        "photo": bot_api.files.add_photo(image_bytes("red")),
        "caption": " \n\t ",
        "forward_origin": {"type": "hidden_user", "date": bot_api.now() - 3600, "sender_user_name": "Zed"},
    })

    [answer] = await bot_api.wait_for_bot_message(chat)
    assert answer.text not in (texts.UNEXPECTED_ERROR, texts.EMPTY_QUESTION, texts.ONLY_IMAGES)
    await answers_settled(application)
    store = runtime(application).store
    [question, _] = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert (question.text, len(question.images)) == (texts.DEFAULT_IMAGE_INSTRUCTION, 1)


@pytest.mark.parametrize("data", ["mode:captioner", "forget:yes:1", "answer:regenerate", "answer:new", "other"])
async def test_a_press_without_a_message_is_told_the_button_no_longer_works(bot_api, start_bot, data):
    """Buttons of inline-mode messages come without `message`; this bot never sends such messages."""
    application = await start_bot()
    user = bot_api.user(USER_ID)
    query = {"id": str(next(bot_api._query_ids)), "from": user.wire(), "inline_message_id": "AAAAAQ",
             "chat_instance": "1", "data": data}
    bot_api.open_callback_queries.add(query["id"])
    bot_api.updates.push("callback_query", query)

    answer = await bot_api.wait_for(lambda: bot_api.callback_answers.get(query["id"]))
    assert answer["text"] == texts.BUTTON_EXPIRED
    await answers_settled(application)
