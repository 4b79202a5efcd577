"""Length groups: a long newcomer runs in a batch of its own instead of padding every short row to its
length; groups merge when their lengths come close; every row keeps `generate`'s greedy tokens."""

from __future__ import annotations

import asyncio

import pytest
from test_decoding import _drop_finished, _generate, _prompts, _start

from model.batch import prepare_prompt
from model.decoding import step
from model.length_groups import LengthGroups, fits
from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, TextDelta, TextPart, Turn

LONG_PROMPT = "please read all of this carefully before you answer my question " * 24
RUNNING_TOKENS = 300  # long enough to run until the newcomer has joined and finished


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


def _long_prompt(loaded):
    ids = loaded.processor.tokenizer(f"<s>User: {LONG_PROMPT}<end_of_utterance>\nAssistant:")["input_ids"]
    return prepare_prompt(loaded, ids, [])


def test_a_long_newcomer_starts_its_own_group_and_a_short_one_joins(loaded) -> None:
    prompts = _prompts(loaded)
    groups = LengthGroups()
    groups.add(_start(loaded, [prompts[1]], 8))
    long_one = _start(loaded, [_long_prompt(loaded)], 8)
    assert long_one.cached_length > 10 * groups.batches[0].cached_length
    assert groups.group_for(long_one) is None
    groups.add(long_one)
    short = _start(loaded, [prompts[2]], 8)
    assert groups.group_for(short) is groups.batches[0]


def test_groups_merge_once_the_long_row_leaves_and_every_row_keeps_generates_tokens(loaded) -> None:
    prompts = _prompts(loaded)
    long_prompt = _long_prompt(loaded)
    alone = [_generate(loaded, [p], 12)[0] for p in (prompts[1], prompts[2])]
    long_alone = _generate(loaded, [long_prompt], 2)[0]
    groups = LengthGroups()
    groups.add(_start(loaded, [long_prompt, prompts[1]], [2, 12]))  # one short row padded to the long one
    groups.add(_start(loaded, [prompts[2]], 12))
    rows = groups.rows
    assert not fits(*groups.batches)
    counts = []
    while groups:
        counts.append(len(groups.batches))
        for batch in groups:
            step(loaded.model, batch)
            groups.replace(batch, _drop_finished(batch))
        groups.merge_close()
    assert counts[0] == 2 and counts[-1] == 1  # merged once the long row had left
    assert [row.generated for row in rows] == [long_alone, alone[0], alone[1]]


def _ask(text: str) -> Conversation:
    return Conversation(turns=(Turn("user", (TextPart(text),)),))


async def _text(service: ModelService, conversation: Conversation, tokens: int) -> str:
    async for event in service.stream(conversation, GenerationParams(max_new_tokens=tokens, ignore_stop=True)):
        if isinstance(event, GenerationResult):
            return event.text
    raise AssertionError("no result")


async def _beside_a_running_row(service: ModelService, newcomer: Conversation) -> tuple[str, str]:
    """The running row's answer and the newcomer's, the newcomer sent once the row streams."""
    params = GenerationParams(max_new_tokens=RUNNING_TOKENS, ignore_stop=True)
    stream = service.stream(_ask("Tell me about the sea"), params)
    deltas = []
    async for event in stream:
        if isinstance(event, TextDelta):
            deltas.append(event.text)
            break
    joining = asyncio.ensure_future(_text(service, newcomer, 12))
    async for event in stream:
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        elif isinstance(event, GenerationResult):
            assert "".join(deltas) == event.text
            return event.text, await joining
    raise AssertionError("no result")


@pytest.mark.parametrize(("newcomer", "groups"), [(LONG_PROMPT, 2), ("And the rivers?", 1)])
async def test_the_service_keeps_a_long_newcomer_apart_and_answers_as_alone(loaded, newcomer, groups) -> None:
    service = ModelService(loaded, prefix_cache_bytes=0, prefill_chunk_tokens=64, batch_window_s=0)
    await service.start()
    try:
        running, joined = await _beside_a_running_row(service, _ask(newcomer))
        most = service.stats.most_groups
        largest = service.stats.largest_batch
        running_alone = await _text(service, _ask("Tell me about the sea"), RUNNING_TOKENS)
        joined_alone = await _text(service, _ask(newcomer), 12)
    finally:
        await service.stop()
    assert largest == 2  # both were in flight at once
    assert most == groups
    assert (running, joined) == (running_alone, joined_alone)
