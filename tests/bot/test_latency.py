"""What a person feels of the bot's speed: the final answer leaves with the model's last token, the
first text with its first word, "typing…" at once, and an image is decoded once.

Timing tests use the scripted model (`bot.scripted_model`), whose token times are known, and compare
against STREAM_EDIT_INTERVAL_S, never against tiny absolute limits: the machine may be busy.
"""

from __future__ import annotations

import time

import bot.prompting
import storage.images
from bot.scripted_model import ScriptedModel
from model.types import ImagePart
from standin.telegram import Window
from tests.bot.conftest import answers_settled, image_bytes, recording_factory

USER_ID = 1301
GROUP_ID = -100130013
BOT = "@idefics_test_bot"


def scripted(model: ScriptedModel):
    async def factory(settings):
        return model

    return factory


def accepted(bot_api, method: str, chat_id: int):
    return [call for call in bot_api.calls_to(method)
            if call.params.get("chat_id") == chat_id and call.status == 200]


async def test_the_final_message_leaves_with_the_last_token_even_right_after_a_draft(bot_api, start_bot):
    interval = 1.5
    model = ScriptedModel(tokens=6, token_delay_s=0.05)  # done ~0.25 s after its first draft
    await start_bot(model_service_factory=scripted(model), stream_edit_interval_s=interval)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "hello")

    [answer] = await bot_api.wait_for_bot_message(chat)
    [final] = accepted(bot_api, "sendMessage", chat.id)
    [written] = model.answers
    assert answer.text == written.text
    drafts = [draft.time for draft in bot_api.draft_records if draft.chat_id == chat.id]
    assert drafts and final.time - drafts[-1] < interval, "a draft went out just before the end"
    assert final.time - written.last_token_at < 0.3 * interval, (
        "the final message must not wait for the draft clock")


async def test_the_first_draft_shows_as_soon_as_there_is_a_word_then_the_interval_paces_them(
    bot_api, start_bot
):
    interval = 1.0
    model = ScriptedModel(tokens=16, token_delay_s=0.15, first_token_delay_s=0.3)
    await start_bot(model_service_factory=scripted(model), stream_edit_interval_s=interval,
                    max_new_tokens=16)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "tell me")

    await bot_api.wait_for_bot_message(chat)
    [written] = model.answers
    drafts = [draft for draft in bot_api.draft_records if draft.chat_id == chat.id]
    assert drafts[0].text == "echo: tell me", "the first draft is the first word(s) written"
    assert drafts[0].time - written.first_token_at < 0.3 * interval
    gaps = [later.time - earlier.time for earlier, later in zip(drafts, drafts[1:])]
    assert gaps and min(gaps) >= 0.9 * interval, gaps


async def test_in_a_group_the_final_edit_goes_out_at_once_after_the_last_token(bot_api, start_bot):
    interval = 2.0  # previews in groups are paced at 4 s at least; the end must not wait for either
    model = ScriptedModel(tokens=6, token_delay_s=0.05)
    whole = "echo: hello w1 w2 w3 w4 w5"
    await start_bot(model_service_factory=scripted(model), stream_edit_interval_s=interval)
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(2001, "Ann")
    await bot_api.send_text(group, ann, f"{BOT} hello")

    [answer] = await bot_api.wait_for_bot_message(group, predicate=lambda message: message.text == whole)
    [edit] = [call for call in accepted(bot_api, "editMessageText", group.id)
              if call.params.get("text") == answer.text]
    assert edit.time - model.answers[0].last_token_at < 0.25 * interval
    assert bot_api.served_429s == 0


async def test_in_a_group_the_final_edit_waits_for_the_groups_limit_and_not_longer(bot_api, start_bot):
    model = ScriptedModel(tokens=4, token_delay_s=0.05)
    whole = "echo: hello w1 w2 w3"
    await start_bot(model_service_factory=scripted(model))
    group, ann = bot_api.group_chat(GROUP_ID), bot_api.user(2001, "Ann")
    # The group is at its limit: its window (2 writes in 3 s here, as 20 a minute in Telegram) holds
    # one earlier write; the growing answer takes the last slot, so the final edit must wait.
    bot_api.flood_limits.group_chat = Window(2, 3.0)
    bot_api.flood.record(group.id, group.type)
    window_opens = time.time() + 3.0
    await bot_api.send_text(group, ann, f"{BOT} hello")

    [answer] = await bot_api.wait_for_bot_message(group, predicate=lambda message: message.text == whole)
    [edit] = [call for call in accepted(bot_api, "editMessageText", group.id)
              if call.params.get("text") == answer.text]
    assert bot_api.served_429s >= 1, "the early edit was refused: the limit did say otherwise"
    assert edit.time >= window_opens - 0.05
    assert edit.time - window_opens < 1.6, "then it goes as early as the group's limit allows"


async def test_typing_shows_before_the_image_has_even_been_downloaded(bot_api, start_bot):
    await start_bot(model_service_factory=scripted(ScriptedModel(tokens=2)))
    bot_api.download_delay_s = 1.5
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"))

    await bot_api.wait_for_bot_message(chat)
    [get_file] = bot_api.calls_to("getFile")
    typing = accepted(bot_api, "sendChatAction", chat.id)
    assert typing and typing[0].time < get_file.time + bot_api.download_delay_s, (
        "typing must show while the download still runs")


async def _answer_photo_then_follow_up(bot_api, start_bot, monkeypatch, **settings):
    """Send a photo and then a text about it; how often images were decoded, and the model's inputs."""
    decodes = {"normalise": 0, "stored": 0}
    normalise, open_stored = storage.images.normalise_image, bot.prompting.open_stored

    def counting_normalise(*args, **kwargs):
        decodes["normalise"] += 1
        return normalise(*args, **kwargs)

    def counting_open_stored(*args, **kwargs):
        decodes["stored"] += 1
        return open_stored(*args, **kwargs)

    monkeypatch.setattr(storage.images, "normalise_image", counting_normalise)
    monkeypatch.setattr(bot.prompting, "open_stored", counting_open_stored)
    factory, services = recording_factory()
    application = await start_bot(model_service_factory=factory, **settings)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("blue", (200, 150)))
    await bot_api.wait_for_bot_message(chat)
    await bot_api.send_text(chat, user, "and what colour is it?")
    await bot_api.wait_for_bot_message(chat, count=2)
    await answers_settled(application)
    return decodes, services[0].conversations


async def test_an_image_is_decoded_once_for_its_answer_and_the_conversations_next_turn(
    bot_api, start_bot, monkeypatch
):
    decodes, conversations = await _answer_photo_then_follow_up(bot_api, start_bot, monkeypatch)
    assert decodes == {"normalise": 1, "stored": 0}
    first, follow_up = conversations
    [picture] = [part for part in follow_up.turns[0].parts if isinstance(part, ImagePart)]
    [original] = [part for part in first.turns[0].parts if isinstance(part, ImagePart)]
    assert picture.key == original.key and picture.image.size == (200, 150)


async def test_without_the_picture_cache_the_next_turn_decodes_the_stored_image(
    bot_api, start_bot, monkeypatch
):
    decodes, conversations = await _answer_photo_then_follow_up(
        bot_api, start_bot, monkeypatch, decoded_image_cache_size=0
    )
    assert decodes == {"normalise": 1, "stored": 2}, "each answer decodes the stored image again"
    assert any(isinstance(part, ImagePart) for part in conversations[1].turns[0].parts)
