"""`python -m bot.bench` end to end with tiny sizes: it runs, answers everyone, and prints its JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.bench import main
from bot.bench_runs import BenchFailed, _check_every_answer, throughput
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


def test_the_crowd_alone_prints_updates_per_second(capsys):
    main(["--crowd-only", "--users", "5", "--messages", "2"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["updates_per_s"] > 0 and figures["updates"] == 10 and figures["database"] == "sqlite"


@pytest.mark.parametrize("database_url", postgresql_only(), indirect=True)
async def test_the_crowd_runs_on_a_postgresql_server_in_a_database_of_its_own(database_url, tmp_path):
    assert await throughput(tmp_path, users=5, messages=2, database_url=database_url) > 0  # all answered
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            left = await connection.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'idefics_bench_%'")
            )
            assert list(left) == [], "the run's database is dropped afterwards"
    finally:
        await engine.dispose()
