"""`python -m bot.bench` end to end with tiny sizes: it runs, answers everyone, and prints its JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.bench import main
from bot.bench_harness import bare_generation_s
from bot.bench_process import throughput_of_own_process
from bot.bench_runs import BenchFailed, _check_every_answer, throughput
from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, ImagePart, Preamble, TextPart, Turn
from tests.databases import postgresql_only

KEYS = ("overhead_median_s", "overhead_p95_s", "last_token_to_final_s", "updates_per_s")


def test_the_bench_prints_its_figures_as_json_on_the_last_line(tiny_checkpoint, capsys):
    main(["--checkpoint", str(tiny_checkpoint), "--answers", "1", "--new-tokens", "4",
          "--users", "5", "--messages", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in KEYS:
        assert isinstance(figures[key], (int, float)) and not isinstance(figures[key], bool), key
    assert figures["updates_per_s"] > 0 and figures["updates"] == 10
    assert 0 <= figures["last_token_to_final_s"] < 5


def test_the_bench_fails_loudly_when_an_answer_is_lost_or_out_of_order():
    chat, user = SimpleNamespace(id=1), SimpleNamespace(id=1)
    answers = ["echo: question 1 from 1", "echo: question 0 from 1"]
    standin = SimpleNamespace(bot_messages=lambda chat: [SimpleNamespace(text=text) for text in answers])
    with pytest.raises(BenchFailed, match="lost or reordered"):
        _check_every_answer(standin, [(chat, user)], 2)
    answers.reverse()
    _check_every_answer(standin, [(chat, user)], 2)
    answers.pop()
    with pytest.raises(BenchFailed):
        _check_every_answer(standin, [(chat, user)], 2)


async def test_the_yardstick_computes_what_the_bot_computed_and_reuses_only_the_shared_preamble(tiny_checkpoint):
    """Bare generation starts from the caches the bot's answer found: a photo nobody sent before is
    prefilled (its features and the prompt after it) exactly as much for the yardstick as for the bot."""
    loaded = load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))
    service = ModelService(loaded, prefix_cache_bytes=64 * 2**20)
    preamble = Preamble(name="test", text="Assistant answers questions about images truthfully and briefly. " * 3)
    params = GenerationParams(max_new_tokens=4, ignore_stop=True)

    def photo_question(rgb: tuple[int, int, int], key: str) -> Conversation:
        image = ImagePart(Image.new("RGB", (40, 32), rgb), key=key)
        return Conversation(turns=(Turn("user", (image, TextPart("What is in this photo?"))),), preamble=preamble)

    await service.start()
    try:
        await bare_generation_s(service, photo_question((1, 2, 3), "sha-earlier"), params)  # an earlier chat
        before = service.stats.prompt_tokens_computed
        bots_answer = photo_question((200, 10, 10), "sha-new")
        async for _ in service.stream(bots_answer, params):
            pass
        computed_for_the_bot = service.stats.prompt_tokens_computed - before
        before = service.stats.prompt_tokens_computed
        await bare_generation_s(service, bots_answer, params)
        computed_for_the_yardstick = service.stats.prompt_tokens_computed - before
    finally:
        await service.stop()
    assert computed_for_the_bot > 0
    assert computed_for_the_yardstick == computed_for_the_bot
    assert service.stats.prompt_tokens_reused > 0  # the preamble was shared, for both


def test_the_crowd_alone_prints_updates_per_second(capsys):
    main(["--crowd-only", "--users", "5", "--messages", "2"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["updates_per_s"] > 0 and figures["updates"] == 10 and figures["database"] == "sqlite"
    assert figures["updates_per_s_sharing_the_standins_loop"] > 0


@pytest.mark.parametrize("database_url", postgresql_only(), indirect=True)
async def test_the_crowd_runs_on_a_postgresql_server_in_a_database_of_its_own(database_url, tmp_path):
    assert await throughput(tmp_path, users=5, messages=2, database_url=database_url) > 0  # all answered
    assert await throughput_of_own_process(tmp_path, users=5, messages=2, database_url=database_url) > 0
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            left = await connection.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'idefics_bench_%'")
            )
            assert list(left) == [], "the run's database is dropped afterwards"
    finally:
        await engine.dispose()
