"""Group addressing: which messages mention the bot, and the question left once the mention is removed."""

from __future__ import annotations

from datetime import datetime, timezone

from telegram import Chat, Message, MessageEntity, User

from bot.addressing import mentions_bot, replies_to_bot, strip_mention

BOT = User(42, "IDEFICS", is_bot=True, username="idefics_test_bot")
ANN = User(7, "Ann", is_bot=False)
GROUP = Chat(-100, Chat.SUPERGROUP)


def group_message(
    text: str, *, entities=(), caption: bool = False, reply_to: Message | None = None
) -> Message:
    content = (
        {"caption": text, "caption_entities": entities} if caption else {"text": text, "entities": entities}
    )
    return Message(1, datetime.now(timezone.utc), GROUP, from_user=ANN, reply_to_message=reply_to, **content)


def mention(text: str, name: str) -> MessageEntity:
    return MessageEntity(MessageEntity.MENTION, text.index(name), len(name))


def test_mention_entity_of_the_bot_counts_in_text_and_caption_any_case():
    text = "hey @IDEFICS_test_bot what is this?"
    assert mentions_bot(
        group_message(text, entities=[mention(text, "@IDEFICS_test_bot")]), "idefics_test_bot"
    )
    caption_message = group_message(text, entities=[mention(text, "@IDEFICS_test_bot")], caption=True)
    assert mentions_bot(caption_message, "idefics_test_bot")


def test_other_mentions_and_plain_text_names_do_not_count():
    text = "@someone_else ask idefics_test_bot"
    assert not mentions_bot(
        group_message(text, entities=[mention(text, "@someone_else")]), "idefics_test_bot"
    )
    assert not mentions_bot(group_message("@idefics_test_bot without an entity"), "idefics_test_bot")


def test_reply_to_the_bots_message_counts_but_not_to_anyone_elses():
    from_bot = Message(5, datetime.now(timezone.utc), GROUP, from_user=BOT, text="an answer")
    from_ann = Message(6, datetime.now(timezone.utc), GROUP, from_user=ANN, text="a question")
    assert replies_to_bot(group_message("why?", reply_to=from_bot), BOT.id)
    assert not replies_to_bot(group_message("why?", reply_to=from_ann), BOT.id)


def test_strip_mention_leaves_the_question_tidy():
    assert strip_mention("@idefics_test_bot what is this?", "idefics_test_bot") == "what is this?"
    assert strip_mention("what is this, @Idefics_Test_Bot ?", "idefics_test_bot") == "what is this, ?"
    assert strip_mention("line one @idefics_test_bot\nline two", "idefics_test_bot") == "line one\nline two"
    assert strip_mention("@idefics_test_bot", "idefics_test_bot") == ""
    assert (
        strip_mention("mail me @idefics_test_bot_fan", "idefics_test_bot") == "mail me @idefics_test_bot_fan"
    )
