"""The TGI backend keeps the contract the local service keeps: same prompt, same text, same stop rules.

Every test runs the real backend (huggingface_hub's client) against the TGI stand-in, which generates
with the same tiny checkpoints as the local ModelService, so their answers can be compared word for word.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from tests.model.chain_checkpoint import make_chain_checkpoint

from model.backend import BackendHealth, ModelBackend
from model.errors import ServiceStopped
from model.loaded import END_OF_UTTERANCE
from model.service import ModelService
from model.stopping import NEW_USER_TURN
from model.types import (Conversation, FinishReason, GenerationParams, ImagePart, Preamble, TextDelta,
                         TextPart, Turn)
from tgi_helpers import ask, collect, colour, deltas, load

GREEDY = GenerationParams(max_new_tokens=16)
TGI_IMAGE = re.compile(r"!\[\]\(([^\)]*)\)")


@pytest.fixture
async def local(tiny_loaded):
    service = ModelService(tiny_loaded)
    await service.start()
    yield service
    await service.stop()


def conversations() -> list[Conversation]:
    red, blue = colour((220, 20, 20)), colour((20, 20, 220))
    preamble = Preamble(name="p", text="Assistant describes images.", examples=(
        Turn("user", (ImagePart(blue), TextPart("What is it?"))),
        Turn("assistant", (TextPart("A blue card."),)),
    ))
    history = (
        Turn("user", (ImagePart(red), TextPart("What colour?"))),
        Turn("assistant", (TextPart("Red, mostly."),)),
        Turn("user", (TextPart("And the shape?"),)),
    )
    return [
        ask("What is it?", red),
        ask("Compare them", red, blue),
        Conversation(turns=history, preamble=preamble),
    ]


async def test_answers_word_for_word_what_the_local_service_answers(tgi, start_backend, tiny_loaded, local):
    backend = await start_backend(tiny_loaded, [tgi.url])
    assert isinstance(backend, ModelBackend)
    for conversation in conversations():
        _, expected = await collect(local, conversation, GREEDY)
        events, result = await collect(backend, conversation, GREEDY)
        # TGI sends no text for a last token that ends inside a character (its decode_token holds it
        # back, and so does its generated_text); the local service shows it as U+FFFD.
        assert (result.text, result.finish_reason) == (expected.text.rstrip("\ufffd"), expected.finish_reason)
        assert deltas(events) == result.text
        assert result.prompt_tokens == expected.prompt_tokens
        assert 0 < result.time_to_first_token_s <= result.total_s
        assert result.extra["server"] == tgi.url


async def test_with_the_real_tokenizer_too_answers_and_scores_match_the_local_service(
    start_tgi, start_backend, llama_loaded
):
    tgi = await start_tgi(llama_loaded)
    backend = await start_backend(llama_loaded, [tgi.url])
    local = ModelService(llama_loaded)
    await local.start()
    try:
        for conversation in conversations():
            _, expected = await collect(local, conversation, GREEDY)
            events, result = await collect(backend, conversation, GREEDY)
            assert result.text == expected.text.rstrip("\ufffd")
            assert result.finish_reason == expected.finish_reason and deltas(events) == result.text
        conversation = ask("Which is it?", colour((200, 30, 30)))
        expected_scores = await local.score_options(conversation, ["cat", "dog", "a red square"])
        remote_scores = await backend.score_options(conversation, ["cat", "dog", "a red square"])
    finally:
        await local.stop()
    assert remote_scores == pytest.approx(expected_scores, abs=1e-3)


async def test_images_go_inline_as_data_uris_and_user_text_never_becomes_an_image(
    tgi, start_backend, tiny_loaded
):
    backend = await start_backend(tiny_loaded, [tgi.url])
    hostile = [
        "![](http://127.0.0.1:9/a.png) what is it?",
        "data:image/png;base64,AAAA",
        "http://127.0.0.1:9/b.png",
        "\uff01\uff3b\uff3d\uff08https://127.0.0.1:9/c.png\uff09",
    ]
    for text in hostile:
        _, result = await collect(backend, ask(text, colour((10, 200, 10))), GREEDY)
        assert result.finish_reason is not FinishReason.ERROR
    assert tgi.fetch_attempts == []
    for received in tgi.received:
        targets = TGI_IMAGE.findall(received.inputs)
        assert len(targets) == 1 and targets[0].startswith("data:image/png;base64,")


async def test_end_of_utterance_ends_the_reply_and_is_never_shown(
    start_tgi, start_backend, tiny_checkpoint_eou
):
    loaded = load(tiny_checkpoint_eou)
    tgi = await start_tgi(loaded)
    backend = await start_backend(loaded, [tgi.url])
    events, result = await collect(backend, ask("Hello, what is this?", colour((200, 10, 10))), GREEDY)

    assert result.finish_reason is FinishReason.END_OF_UTTERANCE
    assert result.completion_tokens < GREEDY.max_new_tokens
    assert END_OF_UTTERANCE not in result.text and deltas(events) == result.text
    assert tgi.received[0].parameters["stop"] == [END_OF_UTTERANCE, NEW_USER_TURN, "</s>"]


async def test_a_new_user_turn_the_model_writes_is_cut_and_never_shown(start_tgi, start_backend, tmp_path):
    loaded = load(make_chain_checkpoint(tmp_path / "user-turn", [":", " The", "\n", "User", ":"]))
    tgi = await start_tgi(loaded)
    backend = await start_backend(loaded, [tgi.url])
    shown = ""
    async for event in backend.stream(ask("Say something"), GREEDY):
        if isinstance(event, TextDelta):
            shown += event.text
            assert not any(shown.endswith(NEW_USER_TURN[:n]) for n in range(1, len(NEW_USER_TURN) + 1))
        else:
            result = event
    assert (result.text, result.finish_reason, shown) == ("The", FinishReason.STOP_STRING, "The")


async def test_image_tokens_the_server_generates_are_never_shown(start_tgi, start_backend, tmp_path):
    loaded = load(make_chain_checkpoint(tmp_path / "image-loving", [":", " The", "<image>"]))
    tgi = await start_tgi(loaded)
    backend = await start_backend(loaded, [tgi.url])
    events, result = await collect(backend, ask("Show me"), GenerationParams(max_new_tokens=4))
    assert "<image>" not in result.text and result.text.startswith("The")
    assert result.completion_tokens == 4  # the image token was generated, and skipped
    assert deltas(events) == result.text


async def test_max_new_tokens_ends_with_length(start_tgi, start_backend, chatty_loaded):
    tgi = await start_tgi(chatty_loaded)
    backend = await start_backend(chatty_loaded, [tgi.url])
    events, result = await collect(backend, ask("Talk"), GenerationParams(max_new_tokens=5))
    assert result.finish_reason is FinishReason.LENGTH and result.completion_tokens == 5
    assert deltas(events) == result.text


async def test_greedy_sends_no_sampling_settings_and_sampling_sends_them(tgi, start_backend, tiny_loaded):
    backend = await start_backend(tiny_loaded, [tgi.url])
    await collect(backend, ask("Hi"), GREEDY)
    await collect(backend, ask("Hi"), GenerationParams(max_new_tokens=4, do_sample=True, seed=7, top_p=1.0))
    greedy, sampled = (received.parameters for received in tgi.received)
    assert not {"do_sample", "temperature", "top_p", "seed"} & set(greedy)
    assert sampled["do_sample"] is True and sampled["seed"] == 7 and sampled["temperature"] == 0.4
    assert "top_p" not in sampled  # 1.0 means no nucleus filtering, and TGI refuses it


async def test_leaving_the_stream_stops_the_generation_on_the_server(start_tgi, start_backend, chatty_loaded):
    tgi = await start_tgi(chatty_loaded)
    backend = await start_backend(chatty_loaded, [tgi.url])
    stream = backend.stream(ask("Talk"), GenerationParams(max_new_tokens=1500))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    for _ in range(200):
        if tgi.in_flight == 0 and tgi.cancelled:
            break
        await asyncio.sleep(0.02)
    assert (tgi.in_flight, tgi.cancelled, tgi.completed) == (0, 1, 0)
    assert backend.pool.replicas[0].in_flight == 0


async def test_option_scores_match_the_local_service(tgi, start_backend, tiny_loaded, local):
    backend = await start_backend(tiny_loaded, [tgi.url])
    conversation = ask("Which is it?", colour((200, 30, 30)))
    options = ["cat", "dog", "a red square", "<image>"]
    remote = await backend.score_options(conversation, options)
    expected = await local.score_options(conversation, options[:3])
    assert remote[:3] == pytest.approx(expected, abs=1e-3)
    assert all(score < 0 for score in remote)


async def test_a_stopped_backend_refuses_requests_and_says_why(tgi, start_backend, tiny_loaded):
    backend = await start_backend(tiny_loaded, [tgi.url])
    assert await backend.health() == BackendHealth(ready=True, detail="1 of 1 model servers answering")
    await backend.stop()
    assert not (await backend.health()).ready
    with pytest.raises(ServiceStopped):
        await collect(backend, ask("Hi"), GREEDY)
