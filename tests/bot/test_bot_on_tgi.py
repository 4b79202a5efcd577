"""The whole bot with MODEL_BACKEND=tgi: the real Application, the Bot API stand-in, and the TGI stand-in
generating with the tiny checkpoint, so what people read is what a text-generation-inference server wrote."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import aiohttp
import pytest

from bot import texts
from bot.health_server import health_server_of
from bot.lifecycle import backend_options
from model.backends import create_backend
from model.tgi_retry import RetryPolicy
from standin.tgi import TgiStandIn
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, free_port, image_bytes, runtime
from tests.tgi.tgi_helpers import FAST_RETRY, load

USER_ID = 1001
TGI_IMAGE = re.compile(r"!\[\]\(data:image/png;base64,[A-Za-z0-9+/=]+\)")
# Waits long enough for the busy note to be shown as a draft before the retry answers.
SLOW_RETRY = RetryPolicy(first_wait_s=0.8, factor=1.5, max_wait_s=1.2, max_waits=3)


@pytest.fixture(scope="module")
def standin_model(tiny_checkpoint):
    """The tiny checkpoint as the TGI stand-in generates with it (loaded once for this module)."""
    return load(tiny_checkpoint)


@pytest.fixture
async def tgi(standin_model):
    server = TgiStandIn(standin_model)
    await server.start()
    yield server
    await server.stop()


def tgi_factory(retry: RetryPolicy = FAST_RETRY):
    """The bot's own settings → create_backend path, with retries and health checks quick for tests."""

    async def factory(settings):
        options = replace(backend_options(settings), tgi_retry=retry, tgi_health_interval_s=0.1)
        return await create_backend(options)

    return factory


async def history(application, chat_id: int):
    await answers_settled(application)
    store = runtime(application).store
    return await store.history((await store.active_conversation(chat_id, USER_ID)).id)


async def healthz(application) -> tuple[int, dict]:
    port = health_server_of(application).port
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status, await response.json()


async def test_a_photo_and_a_follow_up_are_answered_by_the_tgi_server(bot_api, start_bot, tgi):
    application = await start_bot(model_backend="tgi", tgi_url=tgi.url)  # the default factory
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"), caption="What is it?")
    [first] = await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    await bot_api.send_text(chat, user, "And its colour?")
    await bot_api.wait_for_bot_message(chat, count=2)

    question, answer, follow_up, second = await history(application, chat.id)
    assert [t.status for t in (answer, second)] == [TurnStatus.COMPLETE, TurnStatus.COMPLETE]
    assert first.text == (answer.text.strip() or texts.EMPTY_ANSWER)
    assert bot_api.drafts(chat), "the answer grew as TGI streamed it"
    streamed = [r for r in tgi.received if r.path in ("/", "/generate_stream")]
    assert len(streamed) == 2 and tgi.completed == 2
    asked, followed = (TGI_IMAGE.findall(request.inputs) for request in streamed)
    assert followed == asked, "the follow-up sends the mode's images and the earlier photo again, inline"
    assert "What is it?" in streamed[1].inputs and streamed[1].inputs.rstrip().endswith("Assistant:")
    assert "And its colour?" in streamed[1].inputs and not tgi.fetch_attempts


async def test_an_overloaded_server_shows_a_busy_note_then_the_answer(bot_api, start_bot, tgi):
    factory = tgi_factory(SLOW_RETRY)
    application = await start_bot(model_backend="tgi", tgi_url=tgi.url, model_service_factory=factory)
    tgi.faults.overloaded = 2
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("green"))
    [answer] = await bot_api.wait_for_bot_message(chat, timeout=30)

    *_, turn = await history(application, chat.id)
    assert turn.status is TurnStatus.COMPLETE and "busy" not in turn.text
    notes = [draft for draft in bot_api.drafts(chat) if draft.startswith("⏳")]
    assert notes and notes[0] == texts.MODEL_BUSY_RETRYING.format(seconds=1)
    assert answer.text == (turn.text.strip() or texts.EMPTY_ANSWER) and "⏳" not in answer.text
    assert runtime(application).metrics.registry.get_sample_value("idefics_model_busy_waits_total") == 2


async def test_servers_that_stay_overloaded_end_in_the_busy_apology(bot_api, start_bot, tgi):
    application = await start_bot(model_backend="tgi", tgi_url=tgi.url, model_service_factory=tgi_factory())
    tgi.faults.overloaded = 100
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="Anyone there?")
    [reply] = await bot_api.wait_for_bot_message(chat)

    assert reply.text == texts.MODEL_BUSY
    question, turn = await history(application, chat.id)
    assert question.text == "Anyone there?" and turn.status is TurnStatus.FAILED
    outcome = {"outcome": "model_busy"}
    assert runtime(application).metrics.registry.get_sample_value("idefics_answers_total", outcome) == 1


async def test_classify_scores_the_labels_on_the_tgi_server(bot_api, start_bot, tgi):
    application = await start_bot(model_backend="tgi", tgi_url=tgi.url)
    chat = bot_api.private_chat(USER_ID)
    labels = "/classify cat, dog, bird"
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption=labels)
    [reply] = await bot_api.wait_for_bot_message(chat)

    best, _, _, *lines = reply.text.splitlines()
    ranked = [re.fullmatch(r"\d\. (\w+) — ([\d.]+)%", line).groups() for line in lines]
    assert best == ranked[0][0] and sorted(label for label, _ in ranked) == ["bird", "cat", "dog"]
    assert abs(sum(float(percent) for _, percent in ranked) - 100) < 0.5
    prefills = [r for r in tgi.received if r.parameters.get("decoder_input_details")]
    assert len(prefills) == 4 and len(prefills) == len(tgi.received), "scored, not generated"
    *_, turn = await history(application, chat.id)
    assert (turn.status, turn.text) == (TurnStatus.COMPLETE, reply.text)


async def test_a_tgi_server_unreachable_at_start_is_used_once_it_comes_up(bot_api, start_bot, standin_model):
    port = free_port()
    application = await start_bot(
        model_backend="tgi",
        tgi_url=f"http://127.0.0.1:{port}",
        model_service_factory=tgi_factory(),
        metrics_port=0,
        prompt_preamble="none",  # the photo is the prompt's only image
    )
    status, body = await healthz(application)
    assert status == 503 and body["store"] == {"ok": True} and body["model"]["ok"] is False
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("blue"), caption="What is it?")
    [apology] = await bot_api.wait_for_bot_message(chat)
    assert apology.text == texts.NOT_READY

    async with TgiStandIn(standin_model, port=port) as tgi:
        await bot_api.wait_for(lambda: tgi.health_checks, timeout=10)
        async with asyncio.timeout(10):
            while (await healthz(application))[0] != 200:
                await asyncio.sleep(0.05)
        await bot_api.send_text(chat, user, "Now?")
        [_, answer] = await bot_api.wait_for_bot_message(chat, count=2)
        *_, turn = await history(application, chat.id)
        assert turn.status is TurnStatus.COMPLETE and answer.text == (turn.text.strip() or texts.EMPTY_ANSWER)
        assert len(TGI_IMAGE.findall(tgi.received[-1].inputs)) == 1, "the photo sent while TGI was down"


async def test_a_tgi_server_that_goes_away_mid_run_gets_an_apology_then_answers_again(
    bot_api, start_bot, tgi
):
    application = await start_bot(model_backend="tgi", tgi_url=tgi.url, model_service_factory=tgi_factory())
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)

    await tgi.stop()
    await bot_api.send_text(chat, user, "Still there?")
    [*_, apology] = await bot_api.wait_for_bot_message(chat, count=2)
    assert apology.text == texts.NOT_READY
    await tgi.start()  # the same port: the server is back
    await bot_api.send_text(chat, user, "And now?")
    await bot_api.wait_for_bot_message(chat, count=3, timeout=30)

    statuses = [t.status for t in await history(application, chat.id) if t.role == "assistant"]
    assert statuses == [TurnStatus.COMPLETE, TurnStatus.FAILED, TurnStatus.COMPLETE]
