"""What a person would notice when TGI misbehaves: a delay, one retry, or the error the bot knows."""

from __future__ import annotations

import socket

import pytest

from model.errors import GenerationFailed, ModelBusy, PromptTooLong, ServiceStopped
from model.types import Busy, Conversation, FinishReason, GenerationParams, TextPart, Turn
from standin.tgi import Limits
from tgi_helpers import SMALL_LIMITS, ask, collect, deltas

GREEDY = GenerationParams(max_new_tokens=12)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there once closed


async def test_overloaded_servers_make_the_caller_wait_with_busy_then_answer(tgi, start_backend, tiny_loaded):
    backend = await start_backend(tiny_loaded, [tgi.url])
    _, expected = await collect(backend, ask("Hello"), GREEDY)
    tgi.faults.overloaded = 2
    events, result = await collect(backend, ask("Hello"), GREEDY)

    busy = [event for event in events if isinstance(event, Busy)]
    assert [b.attempt for b in busy] == [1, 2] and busy[1].retry_in_s > busy[0].retry_in_s
    assert events.index(busy[-1]) < len(events) - 1 and result.text == expected.text
    assert len(tgi.received) == 4


async def test_a_bare_503_counts_as_busy_too(tgi, start_backend, tiny_loaded):
    # No health check between: the one bare 503 must reach the request, not a /health probe.
    backend = await start_backend(tiny_loaded, [tgi.url], health_interval_s=3600)
    tgi.faults.unavailable = 1
    events, result = await collect(backend, ask("Hello"), GREEDY)
    assert isinstance(events[0], Busy) and result.finish_reason is not FinishReason.ERROR


async def test_servers_that_stay_overloaded_end_in_model_busy(tgi, start_backend, tiny_loaded):
    backend = await start_backend(tiny_loaded, [tgi.url])
    tgi.faults.overloaded = 100
    seen = []
    with pytest.raises(ModelBusy):
        async for event in backend.stream(ask("Hello"), GREEDY):
            seen.append(event)
    assert seen and all(isinstance(event, Busy) for event in seen)
    with pytest.raises(ModelBusy):
        await backend.score_options(ask("Which?"), ["yes", "no"])


async def test_an_overloaded_server_hands_the_request_to_another_at_once(
    start_tgi, start_backend, tiny_loaded
):
    busy, free = await start_tgi(tiny_loaded), await start_tgi(tiny_loaded)
    backend = await start_backend(tiny_loaded, [busy.url, free.url])
    busy.faults.overloaded = 1
    free.faults.overloaded = 0
    events, result = await collect(backend, ask("Hello"), GREEDY)
    assert not any(isinstance(event, Busy) for event in events)
    assert result.extra["server"] == free.url


async def test_a_connection_dropped_before_any_text_is_retried_on_another_server(
    start_tgi, start_backend, tiny_loaded
):
    first, second = await start_tgi(tiny_loaded), await start_tgi(tiny_loaded)
    backend = await start_backend(tiny_loaded, [first.url, second.url])
    first.faults.drop_after_tokens = 0  # idle servers take turns in order: the first one gets it first
    events, result = await collect(backend, ask("Hello"), GREEDY)
    assert result.finish_reason is FinishReason.LENGTH and deltas(events) == result.text
    assert (len(first.received), len(second.received), result.extra["server"]) == (1, 1, second.url)


async def test_a_lone_server_that_drops_the_request_fails_it_without_blaming_startup(
    tgi, start_backend, tiny_loaded
):
    backend = await start_backend(tiny_loaded, [tgi.url])
    tgi.faults.drop_after_tokens = 0
    with pytest.raises(GenerationFailed, match="broke it off"):
        await collect(backend, ask("Hello"), GREEDY)
    assert (await backend.health()).ready  # a dropped request says nothing about the server's health


async def test_a_connection_dropped_after_text_was_shown_fails_the_answer(
    start_tgi, start_backend, chatty_loaded
):
    tgi = await start_tgi(chatty_loaded)
    backend = await start_backend(chatty_loaded, [tgi.url])
    tgi.faults.drop_after_tokens = 4
    shown = ""
    with pytest.raises(GenerationFailed):
        async for event in backend.stream(ask("Talk"), GenerationParams(max_new_tokens=40)):
            shown += getattr(event, "text", "")
    assert shown.strip() and len(tgi.received) == 1  # never retried: the reader would see it twice


async def test_a_model_failure_on_the_server_is_generation_failed(tgi, start_backend, tiny_loaded):
    backend = await start_backend(tiny_loaded, [tgi.url])
    tgi.faults.failing = 1
    with pytest.raises(GenerationFailed, match="out of memory") as raised:
        await collect(backend, ask("Hello"), GREEDY)
    assert not isinstance(raised.value, ModelBusy)


async def test_no_reachable_server_is_service_stopped_and_unhealthy(start_backend, tiny_loaded):
    nowhere = closed_port_url()
    backend = await start_backend(tiny_loaded, [nowhere])
    health = await backend.health()
    assert not health.ready and nowhere in health.detail
    with pytest.raises(ServiceStopped):
        await collect(backend, ask("Hello"), GREEDY)
    with pytest.raises(ServiceStopped):
        await backend.score_options(ask("Which?"), ["yes", "no"])


async def test_prompts_are_fitted_to_the_servers_limits(start_tgi, start_backend, tiny_loaded):
    tgi = await start_tgi(tiny_loaded, limits=SMALL_LIMITS)
    backend = await start_backend(tiny_loaded, [tgi.url])
    turns = []
    for n in range(12):
        turns += [Turn("user", (TextPart(f"Question {n}: what is in the picture today?"),)),
                  Turn("assistant", (TextPart("A red circle on a white background."),))]
    conversation = Conversation(turns=(*turns, Turn("user", (TextPart("And now?"),))))
    _, result = await collect(backend, conversation, GenerationParams(max_new_tokens=64))
    assert result.dropped_turns > 0 and result.prompt_tokens + 64 <= SMALL_LIMITS.max_total_tokens
    with pytest.raises(PromptTooLong):
        await collect(backend, ask("a very long question " * 60), GREEDY)
    assert len(tgi.received) == 1  # the hopeless one never went out


async def test_limits_lowered_on_a_running_server_are_learnt_from_its_422(
    start_tgi, start_backend, tiny_loaded
):
    tgi = await start_tgi(tiny_loaded)
    backend = await start_backend(tiny_loaded, [tgi.url])
    tgi.limits = Limits(max_input_tokens=60, max_total_tokens=80)  # restarted with smaller limits
    history = (Turn("user", (TextPart("Tell me about the sea and the boats in the harbour."),)),
               Turn("assistant", (TextPart("The sea is calm and the boats are small."),)))
    conversation = Conversation(turns=(*history * 3, Turn("user", (TextPart("More?"),))))
    _, result = await collect(backend, conversation, GenerationParams(max_new_tokens=8))
    assert result.dropped_turns > 0 and len(tgi.received) == 2


async def test_a_server_allowing_fewer_stop_sequences_gets_the_most_important_ones(
    start_tgi, start_backend, tiny_loaded
):
    tgi = await start_tgi(tiny_loaded, limits=Limits(max_stop_sequences=2))
    backend = await start_backend(tiny_loaded, [tgi.url])
    _, result = await collect(backend, ask("Hello"), GREEDY)
    assert result.finish_reason is not FinishReason.ERROR
    assert tgi.received[0].parameters["stop"] == ["<end_of_utterance>", "\nUser:"]
