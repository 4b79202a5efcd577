"""The TGI stand-in answers as TGI 3.x documents and does: wire format, stops, errors, faults on demand.

Raw HTTP where the bytes matter (SSE framing, status codes), huggingface_hub's client where what
matters is that a real TGI client reads it the way it reads TGI.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import aiohttp
import pytest
from model.tgi_client import TgiClient
from huggingface_hub.errors import OverloadedError, ValidationError

from standin.tgi import Limits
from tgi_helpers import colour

PROMPT = "User: Tell me about the sea<end_of_utterance>\nAssistant:"


def png_markdown(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"![](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


async def post(url: str, path: str, body: dict) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + path, json=body) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.read()


def sse_payloads(raw: bytes) -> list[dict]:
    events = [event for event in raw.decode().split("\n\n") if event]
    assert all(event.startswith("data:") for event in events), events
    return [json.loads(event[len("data:") :]) for event in events]


async def test_a_stream_is_token_events_then_one_final_event_with_the_text_and_details(tgi):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 6, "details": True}}
    status, content_type, raw = await post(tgi.url, "/generate_stream", body)

    assert status == 200 and content_type.startswith("text/event-stream")
    assert b"[DONE]" not in raw
    events = sse_payloads(raw)
    assert [e["index"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(set(e["token"]) == {"id", "text", "logprob", "special"} for e in events)
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    final = events[-1]
    assert final["details"]["finish_reason"] == "length"
    assert final["details"]["generated_tokens"] == 6 and final["details"]["input_length"] > 0
    assert final["generated_text"] == "".join(e["token"]["text"] for e in events if not e["token"]["special"])


async def test_a_stop_sequence_ends_the_reply_and_its_text_stays_in_generated_text(tgi):
    async with TgiClient(tgi.url) as client:
        free = await client.text_generation(PROMPT, details=True, max_new_tokens=12)
        stop = next(t.text for t in free.details.tokens[2:] if t.text.strip() and not t.special)
        stopped = await client.text_generation(PROMPT, details=True, max_new_tokens=12, stop=[stop])

    assert stopped.details.finish_reason == "stop_sequence"
    assert stopped.generated_text.endswith(stop)
    assert free.generated_text.startswith(stopped.generated_text)
    assert stopped.details.generated_tokens < 12


async def test_validation_errors_are_tgis_words_as_a_stream_event_or_a_422(tgi):
    five_stops = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4, "stop": list("abcde")}}
    status, _, raw = await post(tgi.url, "/generate_stream", five_stops)
    assert status == 200
    assert sse_payloads(raw) == [{
        "error": "Input validation error: `stop` supports up to 4 stop sequences. Given: 5",
        "error_type": "validation",
    }]
    status, _, raw = await post(tgi.url, "/generate", five_stops)
    assert status == 422 and json.loads(raw)["error_type"] == "validation"

    async with TgiClient(tgi.url) as client:
        with pytest.raises(ValidationError, match="`top_p` must be > 0.0 and < 1.0"):
            await client.text_generation(PROMPT, max_new_tokens=4, top_p=1.0)
        with pytest.raises(ValidationError, match="not supported when streaming"):
            async for _ in await client.text_generation(
                PROMPT, stream=True, details=True, decoder_input_details=True, max_new_tokens=4
            ):
                pass


async def test_a_prompt_over_the_limits_is_refused_with_the_token_counts(start_tgi, tiny_loaded):
    tgi = await start_tgi(tiny_loaded, limits=Limits(max_input_tokens=20, max_total_tokens=40))
    async with TgiClient(tgi.url) as client:
        with pytest.raises(ValidationError, match=r"`inputs` tokens \+ `max_new_tokens` must be <= 40"):
            await client.text_generation(PROMPT, max_new_tokens=30)
        with pytest.raises(ValidationError, match="`inputs` must have less than 20 tokens"):
            await client.text_generation(PROMPT * 3, max_new_tokens=1)
    assert tgi.info()["max_input_tokens"] == 20 and tgi.info()["max_total_tokens"] == 40


async def test_overloaded_on_demand_and_beyond_max_concurrent_requests(start_tgi, chatty_loaded):
    tgi = await start_tgi(chatty_loaded, limits=Limits(max_concurrent_requests=1))
    tgi.faults.overloaded = 1
    status, _, raw = await post(tgi.url, "/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
    assert status == 429 and json.loads(raw) == {"error": "Model is overloaded", "error_type": "overloaded"}

    async with TgiClient(tgi.url) as client:
        long_one = asyncio.create_task(client.text_generation(PROMPT, max_new_tokens=300))
        while tgi.in_flight == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError):
            async for _ in await client.text_generation(PROMPT, stream=True, details=True, max_new_tokens=2):
                pass
        await long_one


async def test_unavailable_and_unhealthy_on_demand(tgi):
    tgi.faults.unavailable = 1
    status, _, raw = await post(tgi.url, "/generate", {"inputs": PROMPT})
    assert (status, raw) == (503, b"Service Unavailable")
    async with aiohttp.ClientSession() as session:
        async with session.get(tgi.url + "/health") as healthy:
            assert healthy.status == 200
        tgi.faults.unhealthy = True
        async with session.get(tgi.url + "/health") as sick:
            assert sick.status == 503 and (await sick.json())["error_type"] == "healthcheck"


async def test_a_connection_dropped_mid_stream_on_demand(tgi):
    tgi.faults.drop_after_tokens = 2
    received = []
    async with aiohttp.ClientSession() as session:
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 10, "details": True}}
        async with session.post(tgi.url + "/generate_stream", json=body) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in response.content:
                    if line.startswith(b"data:"):
                        received.append(json.loads(line[5:]))
    assert len(received) == 2 and all(event["details"] is None for event in received)


async def test_a_client_that_leaves_stops_the_generation(start_tgi, chatty_loaded):
    tgi = await start_tgi(chatty_loaded)
    async with aiohttp.ClientSession() as session:
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 1000, "details": True}}
        async with session.post(tgi.url + "/generate_stream", json=body) as response:
            await response.content.readline()
    for _ in range(200):
        if tgi.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert tgi.in_flight == 0 and tgi.cancelled == 1 and tgi.completed == 0


async def test_data_uri_images_reach_the_model_and_urls_are_never_fetched(tgi):
    async with TgiClient(tgi.url) as client:
        answers = {
            await client.text_generation(f"User:{png_markdown(colour(rgb))}What is it?", max_new_tokens=8)
            for rgb in [(250, 0, 0), (0, 0, 250), (0, 250, 0)]
        }
        with pytest.raises(ValidationError, match="Could not fetch image"):
            await client.text_generation("User:![](http://127.0.0.1:9/x.png)What is it?", max_new_tokens=8)
        with pytest.raises(ValidationError, match="invalid image content"):
            await client.text_generation("User:![](file:///etc/passwd)What?", max_new_tokens=8)
    assert len(answers) == 3  # the images change what the model writes
    assert tgi.fetch_attempts == ["http://127.0.0.1:9/x.png"]


async def test_decoder_input_details_give_every_prompt_tokens_log_probability(tgi, tiny_loaded):
    async with TgiClient(tgi.url) as client:
        output = await client.text_generation(
            PROMPT, details=True, decoder_input_details=True, max_new_tokens=1
        )
    prefill = output.details.prefill
    expected = tiny_loaded.processor(text=[PROMPT])["input_ids"][0].tolist()
    assert [token.id for token in prefill] == expected
    assert prefill[0].logprob is None
    assert all(token.logprob <= 0.0 for token in prefill[1:])
