"""Continuous batching through the real ModelService: newcomers join a running batch, finished rows leave."""

from __future__ import annotations

import asyncio

import pytest
import torch
from chain_checkpoint import make_chain_checkpoint
from PIL import Image

from model import idefics_forward
from model.errors import GenerationFailed
from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import (
    Conversation,
    FinishReason,
    GenerationParams,
    GenerationResult,
    ImagePart,
    TextDelta,
    TextPart,
    Turn,
)

LONG = GenerationParams(max_new_tokens=1500, ignore_stop=True)
SHORT = GenerationParams(max_new_tokens=12)


def _ask(text: str, rgb: tuple[int, int, int] | None = None) -> Conversation:
    parts = (TextPart(text),) if rgb is None else (ImagePart(Image.new("RGB", (40, 32), rgb)), TextPart(text))
    return Conversation(turns=(Turn(role="user", parts=parts),))


async def _result(
    service: ModelService, conversation: Conversation, params: GenerationParams
) -> GenerationResult:
    async for event in service.stream(conversation, params):
        if isinstance(event, GenerationResult):
            return event
    raise AssertionError("no result")


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


@pytest.fixture
async def service(loaded):
    service = ModelService(loaded, max_batch_size=8, batch_window_s=0.05)
    await service.start()
    yield service
    await service.stop()


async def _wait_for_steps(service: ModelService, count: int) -> None:
    target = service.stats.steps + count
    while service.stats.steps < target:
        await asyncio.sleep(0.005)


async def _wait_until_idle(service: ModelService) -> None:
    while service.stats.running_rows:
        await asyncio.sleep(0.005)


async def test_a_request_sent_mid_way_through_a_long_answer_starts_and_ends_before_it(service) -> None:
    newcomer = _ask("What colour is this?", (200, 40, 40))
    alone = await _result(service, newcomer, SHORT)
    long_deltas: list[str] = []
    long_started = asyncio.Event()

    async def long_answer() -> None:
        async for event in service.stream(_ask("Write a very long story", (10, 10, 200)), LONG):
            if isinstance(event, TextDelta):
                long_deltas.append(event.text)
                long_started.set()

    long_task = asyncio.create_task(long_answer())
    await asyncio.wait_for(long_started.wait(), timeout=60)
    await _wait_for_steps(service, 20)
    joined = await asyncio.wait_for(_result(service, newcomer, SHORT), timeout=60)
    assert not long_task.done()  # the long answer is still being written
    assert service.stats.largest_batch == 2  # the newcomer joined the running batch
    assert joined.text == alone.text and joined.completion_tokens == alone.completion_tokens
    assert joined.time_to_first_token_s is not None and joined.time_to_first_token_s < 5
    await _wait_for_steps(service, 2)
    assert service.stats.running_rows == 1  # the finished newcomer left the batch
    long_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_task


async def test_finished_rows_leave_the_batch_as_soon_as_they_finish(service) -> None:
    async def run(max_new_tokens: int) -> GenerationResult:
        params = GenerationParams(max_new_tokens, ignore_stop=True)
        return await _result(service, _ask(f"Request of {max_new_tokens}"), params)

    short_task = asyncio.create_task(run(3))
    long_task = asyncio.create_task(run(200))
    short = await short_task
    assert short.completion_tokens == 3 and not long_task.done()
    await _wait_for_steps(service, 2)
    assert service.stats.running_rows == 1
    long = await long_task
    assert long.completion_tokens == 200
    assert service.stats.largest_batch == 2
    # Results go out as soon as a row's last token is chosen, a moment before the worker drops the row.
    await asyncio.wait_for(_wait_until_idle(service), timeout=5)


async def test_seeded_sampling_gives_the_same_text_alone_and_in_a_shared_batch(service) -> None:
    seeded = GenerationParams(max_new_tokens=20, do_sample=True, temperature=1.0, top_p=1.0, seed=11)
    conversation = _ask("Tell me something", (30, 60, 90))
    alone = (await _result(service, conversation, seeded)).text
    company = [_ask("Another question"), _ask("A third", (1, 2, 3))]
    shared = await asyncio.gather(
        _result(service, conversation, seeded),
        *(
            _result(service, c, GenerationParams(max_new_tokens=30, do_sample=True, temperature=1.0))
            for c in company
        ),
    )
    assert service.stats.largest_batch == 3
    assert shared[0].text == alone


async def test_a_newcomer_whose_prefill_fails_fails_alone_and_the_running_answer_goes_on(
    service, loaded, monkeypatch
) -> None:
    params = GenerationParams(max_new_tokens=150, ignore_stop=True)
    running = _ask("Keep talking", (90, 20, 20))
    alone = await _result(service, running, params)
    real_forward = idefics_forward.forward

    def forward_failing_on_prompts(model, **kwargs):
        if kwargs["input_ids"].shape[1] > 1:
            raise RuntimeError("simulated failure while reading a prompt")
        return real_forward(model, **kwargs)

    task = asyncio.create_task(_result(service, running, params))
    await _wait_for_steps(service, 10)
    monkeypatch.setattr(idefics_forward, "forward", forward_failing_on_prompts)
    with pytest.raises(GenerationFailed):
        await _result(service, _ask("I will fail"), SHORT)
    survivor = await asyncio.wait_for(task, timeout=60)
    assert survivor.text == alone.text and survivor.completion_tokens == 150
    assert service.stats.finished[FinishReason.ERROR] == 1


@pytest.fixture(scope="module")
def held_back(tmp_path_factory):
    """A model that answers "\n", "U", "p", " the", " the", ...: as "\nU" could still become "\nUser:",
    a request shows no text until its third token (so a failure right after its prefill may retry it)."""
    directory = tmp_path_factory.mktemp("held-back")
    checkpoint = make_chain_checkpoint(directory, [":", "\n", "U", "p", " the", " the"])
    return load_model(LoadOptions(model_id=str(checkpoint), dtype="float32", device_map=None))


async def test_a_failing_step_retries_requests_that_showed_nothing_and_fails_the_others(
    held_back, monkeypatch
) -> None:
    loaded = held_back
    service = ModelService(loaded, max_batch_size=8, batch_window_s=0.05)
    await service.start()
    try:
        alone = await _result(service, _ask("Question"), SHORT)
        failing = _failing_once_after_a_newcomer_joins(idefics_forward.forward)
        monkeypatch.setattr(idefics_forward, "forward", failing)
        long_params = GenerationParams(300, ignore_stop=True)
        long_task = asyncio.create_task(_outcome(service, _ask("Long"), long_params))
        await _wait_for_steps(service, 10)
        newcomers = await asyncio.gather(*(_outcome(service, _ask(f"Question {n}"), SHORT) for n in range(3)))
        long_deltas, long_outcome = await long_task
    finally:
        await service.stop()
    assert alone.text.startswith("Up the")
    assert isinstance(long_outcome, GenerationFailed) and long_deltas  # it had shown text: not retried
    for deltas, outcome in newcomers:
        assert isinstance(outcome, GenerationResult)
        assert outcome.text == alone.text and "".join(deltas) == outcome.text  # retried, nothing repeated
    assert service.stats.retries == 1


def _failing_once_after_a_newcomer_joins(real_forward):
    """A forward that raises once: at the first step after a prefill that joined a running batch."""
    state = {"steps": 0, "armed": False, "failed": False}

    def forward(model, **kwargs):
        if kwargs["input_ids"].shape[1] == 1:
            state["steps"] += 1
            if state["armed"] and not state["failed"]:
                state["failed"] = True
                raise RuntimeError("simulated kernel failure in a step")
        elif state["steps"] > 0:
            state["armed"] = True
        return real_forward(model, **kwargs)

    return forward


async def _outcome(service: ModelService, conversation: Conversation, params: GenerationParams):
    """The deltas a reader saw, then the result or the error that ended the stream."""
    deltas: list[str] = []
    try:
        async for event in service.stream(conversation, params):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            else:
                return deltas, event
    except GenerationFailed as exc:
        return deltas, exc
    raise AssertionError("no result")


async def test_out_of_memory_in_a_step_restarts_unshown_requests_in_smaller_batches(
    held_back, monkeypatch
) -> None:
    service = ModelService(held_back, max_batch_size=8, batch_window_s=0.2)
    await service.start()
    real_forward = idefics_forward.forward
    step_sizes: list[int] = []

    def forward_with_memory_for_two_rows(model, **kwargs):
        rows, length = kwargs["input_ids"].shape
        if length == 1:
            step_sizes.append(rows)
            if rows > 2:
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
        return real_forward(model, **kwargs)

    try:
        alone = await _result(service, _ask("Question"), SHORT)
        monkeypatch.setattr(idefics_forward, "forward", forward_with_memory_for_two_rows)
        outcomes = await asyncio.gather(*(_outcome(service, _ask(f"Question {n}"), SHORT) for n in range(4)))
    finally:
        await service.stop()
    for deltas, outcome in outcomes:
        assert isinstance(outcome, GenerationResult)
        assert outcome.text == alone.text and "".join(deltas) == outcome.text
    assert step_sizes[0] == 4 and max(step_sizes[1:]) <= 2
    assert service.stats.retries == 1


async def test_a_cancelled_row_leaves_the_batch_within_a_step(service) -> None:
    stream = service.stream(_ask("A long story"), LONG)
    await stream.__anext__()
    await _wait_for_steps(service, 5)
    await stream.aclose()  # the reader goes away: the request is cancelled now
    steps_at_cancel = service.stats.steps
    await asyncio.wait_for(_wait_until_idle(service), timeout=5)
    assert service.stats.steps - steps_at_cancel <= 1  # at most the step already under way
    assert service.stats.finished[FinishReason.CANCELLED] == 1
    assert service.stats.completion_tokens <= service.stats.steps + 1
