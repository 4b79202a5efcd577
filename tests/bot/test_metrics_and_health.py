"""/healthz and /metrics over HTTP against a running bot (METRICS_PORT), as a container healthcheck and a
Prometheus scraper see them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import sys

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.errors import ListenFailed
from bot.health_server import health_server_of
from bot.metrics import ModelStatsCollector
from storage.types import TurnStatus
from tests.bot.conftest import answers_settled, free_port, image_bytes, recording_factory, runtime

USER_ID = 1001


async def get(application, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET `path` on the application's endpoint."""
    port = health_server_of(application).port
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, response.headers["Content-Type"], await response.text()


async def scrape(application) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, content_type, body = await get(application, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def test_a_running_bot_reports_health_and_its_answers_over_http(bot_api, start_bot):
    application = await start_bot(metrics_port=0)
    status, content_type, body = await get(application, "/healthz")
    assert (status, content_type.split(";")[0]) == (200, "application/json")
    assert '"status": "ok"' in body and '"store": {"ok": true}' in body

    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"))
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    store = runtime(application).store
    *_, turn = await store.history((await store.active_conversation(chat.id, USER_ID)).id)
    assert turn.status is TurnStatus.COMPLETE

    samples = await scrape(application)
    assert samples[("idefics_answers_total", (("outcome", "complete"),))] == 1
    assert samples[("idefics_time_to_first_token_seconds_count", ())] == 1
    assert samples[("idefics_tokens_per_second_count", ())] == (1 if turn.completion_tokens > 1 else 0)
    assert samples[("idefics_model_completion_tokens", ())] == turn.completion_tokens
    assert samples[("idefics_answers_waiting", ())] == samples[("idefics_answers_in_flight", ())] == 0
    assert ("idefics_image_cache_hit_ratio", ()) in samples
    assert ("process_resident_memory_bytes", ()) in samples, "prometheus-client's process metrics too"


async def test_each_bot_counts_only_its_own_answers(bot_api, start_bot):
    first = await start_bot(metrics_port=0)
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_text(chat, bot_api.user(USER_ID), "hello")
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(first)
    assert (await scrape(first))[("idefics_answers_total", (("outcome", "complete"),))] == 1
    await start_bot.stop(first)

    second = await start_bot(metrics_port=0)
    assert ("idefics_answers_total", (("outcome", "complete"),)) not in await scrape(second)


async def test_queue_depth_and_answers_in_flight_while_someone_waits(bot_api, start_bot):
    factory, _ = recording_factory(delay_s=0.3)  # each answer takes a few seconds
    application = await start_bot(metrics_port=0, model_service_factory=factory)
    chat, user = bot_api.private_chat(USER_ID), bot_api.user(USER_ID)
    await bot_api.send_photo(chat, user, image_bytes("red"))
    await bot_api.send_text(chat, user, "and then?")  # waits for the first answer

    seen = set()
    async with asyncio.timeout(60):
        while len(bot_api.bot_messages(chat)) < 2:
            samples = await scrape(application)
            seen.add((samples[("idefics_answers_in_flight", ())], samples[("idefics_answers_waiting", ())]))
    assert (1, 1) in seen, seen
    await answers_settled(application)
    samples = await scrape(application)
    assert samples[("idefics_answers_in_flight", ())] == samples[("idefics_answers_waiting", ())] == 0


async def test_telegram_errors_are_counted_by_kind_and_method(bot_api, start_bot):
    application = await start_bot(metrics_port=0)
    bot_api.fail_next("sendMessageDraft", 400, "Bad Request: drafts are off here")  # edits take over
    chat = bot_api.private_chat(USER_ID)
    await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"))
    await bot_api.wait_for_bot_message(chat)
    await answers_settled(application)
    blocked = bot_api.private_chat(2002)
    blocked.blocked = True
    await bot_api.send_text(blocked, bot_api.user(2002), "hello?")
    await bot_api.wait_for(lambda: any(e.error_code == 403 for e in bot_api.served_errors))
    await answers_settled(application)

    samples = await scrape(application)
    refused = ("idefics_telegram_errors_total", (("kind", "bad_request"), ("method", "sendMessageDraft")))
    assert samples[refused] == 1
    forbidden = sum(v for (name, labels), v in samples.items()
                    if name == "idefics_telegram_errors_total" and ("kind", "forbidden") in labels)
    assert forbidden == sum(1 for e in bot_api.served_errors if e.error_code == 403)


async def test_the_docker_healthcheck_passes_on_a_healthy_bot_and_fails_on_an_unhealthy_one(
    bot_api, start_bot
):
    from tests.test_containers import stages, values

    [check] = values(stages()["slim"], "HEALTHCHECK")
    command = json.loads(check.split("CMD", 1)[1])
    application = await start_bot(metrics_port=0)
    port = str(health_server_of(application).port)

    async def healthcheck() -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command[1:], env={**os.environ, "METRICS_PORT": port},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        return await process.wait()

    assert await healthcheck() == 0
    await runtime(application).model.stop()
    assert await healthcheck() != 0


async def test_health_says_starting_while_the_model_loads(bot_api, start_bot):
    loading, loaded = asyncio.Event(), asyncio.Event()
    factory, _ = recording_factory()

    async def slow_factory(settings):
        loading.set()
        await loaded.wait()  # the model is "loading" until the test has looked
        return await factory(settings)

    port = free_port()
    starting = asyncio.create_task(start_bot(metrics_port=port, model_service_factory=slow_factory))
    await asyncio.wait_for(loading.wait(), 30)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert (response.status, await response.json()) == (503, {"status": "starting"})
    loaded.set()
    application = await starting
    assert (await get(application, "/healthz"))[0] == 200


async def test_health_is_503_and_says_which_part_is_down(bot_api, start_bot):
    application = await start_bot(metrics_port=0)
    await runtime(application).model.stop()
    status, _, body = await get(application, "/healthz")
    assert status == 503 and '"status": "unhealthy"' in body
    assert '"model": {"ok": false, "detail": "the model worker is not running"}' in body
    await runtime(application).store.stop()
    status, _, body = await get(application, "/healthz")
    assert status == 503 and '"store": {"ok": false, "detail": "StorageError: store is not started"}' in body


async def test_the_endpoint_is_off_without_metrics_port_and_a_taken_port_is_one_clear_error(
    bot_api, start_bot
):
    assert health_server_of(await start_bot()) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ListenFailed, match=r"METRICS_PORT=\d+ \(.*\); choose a free port"):
            await start_bot(metrics_port=taken.getsockname()[1])


def test_the_model_backend_reports_a_prefix_cache_hit_ratio_once_its_stats_have_one():
    @dataclasses.dataclass
    class Stats:  # only the prefix cache's fields: a backend without an image cache
        prompt_tokens_reused: int = 30
        prompt_tokens_computed: int = 10
        prefix_cache_bytes_used: int = 4096

    class Backend:
        stats = Stats()

    families = {family.name: family for family in ModelStatsCollector(Backend()).collect()}
    assert families["idefics_prefix_cache_hit_ratio"].samples[0].value == 0.75
    assert families["idefics_model_prefix_cache_bytes_used"].samples[0].value == 4096
    assert "idefics_image_cache_hit_ratio" not in families, "nothing for what the backend lacks"


def test_the_local_services_stats_give_the_prefix_cache_hit_ratio():
    from model.stats import StatsRecorder

    recorder = StatsRecorder()
    recorder.prefilled(reused=0, computed=100, cache_bytes=1000)  # a first message: all computed
    recorder.prefilled(reused=90, computed=10, cache_bytes=1500)  # its follow-up: mostly reused

    class Backend:
        stats = recorder.snapshot()

    families = {family.name: family for family in ModelStatsCollector(Backend()).collect()}
    assert families["idefics_prefix_cache_hit_ratio"].samples[0].value == 90 / 200
    assert families["idefics_model_prefix_cache_bytes_used"].samples[0].value == 1500
    assert families["idefics_model_prompt_tokens_reused"].samples[0].value == 90
