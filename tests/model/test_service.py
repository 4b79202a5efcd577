"""ModelService on real tiny IDEFICS checkpoints: stopping, streaming, cancelling, batching, failures."""

from __future__ import annotations

import asyncio
import io
import os
import time

import pytest
import torch
from chain_checkpoint import make_chain_checkpoint
from PIL import Image

from model import idefics_forward
from model.batch import collate, image_dims, prepare_prompt
from model.errors import GenerationFailed, PromptTooLong, ServiceStopped
from model.loaded import END_OF_UTTERANCE, LoadOptions
from model.loading import load_model
from model.prompt import PromptBuilder
from model.sampling import RowSampler
from model.service import ModelService
from model.stopping import NEW_USER_TURN
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

os.environ["HF_HUB_OFFLINE"] = "1"

GREEDY = GenerationParams(max_new_tokens=24)


def _load(directory) -> object:
    return load_model(LoadOptions(model_id=str(directory), dtype="float32", device_map=None))


def _ask(text: str, image: Image.Image | None = None) -> Conversation:
    parts = (ImagePart(image), TextPart(text)) if image is not None else (TextPart(text),)
    return Conversation(turns=(Turn(role="user", parts=parts),))


def _colour(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (40, 32), rgb)


async def _collect(service: ModelService, conversation: Conversation, params=GREEDY):
    deltas: list[str] = []
    result = None
    async for event in service.stream(conversation, params):
        assert result is None, "nothing may follow the GenerationResult"
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            assert isinstance(event, GenerationResult)
            result = event
    assert result is not None
    return deltas, result


@pytest.fixture(scope="module")
def tiny_loaded(tiny_checkpoint):
    return _load(tiny_checkpoint)


@pytest.fixture
async def service(tiny_loaded):
    service = ModelService(tiny_loaded, max_batch_size=8, batch_window_s=0.3)
    await service.start()
    yield service
    await service.stop()


async def test_eou_checkpoint_stops_at_end_of_utterance_and_never_shows_the_token(tiny_checkpoint_eou) -> None:
    service = ModelService(_load(tiny_checkpoint_eou))
    await service.start()
    try:
        deltas, result = await _collect(service, _ask("Hello, what is this?", _colour((200, 10, 10))))
    finally:
        await service.stop()
    assert result.finish_reason is FinishReason.END_OF_UTTERANCE
    assert result.completion_tokens < GREEDY.max_new_tokens
    assert END_OF_UTTERANCE not in result.text and all(END_OF_UTTERANCE not in d for d in deltas)
    assert "".join(deltas) == result.text


async def test_new_user_turn_the_model_writes_never_reaches_the_consumer(tmp_path) -> None:
    # This checkpoint writes " The\nUser: The\nUser:..." after the prompt's final ":".
    checkpoint = make_chain_checkpoint(tmp_path / "user-turn", [":", " The", "\n", "User", ":"])
    service = ModelService(_load(checkpoint))
    await service.start()
    try:
        deltas, result = await _collect(service, _ask("Say something", _colour((0, 90, 200))))
    finally:
        await service.stop()
    assert result.finish_reason is FinishReason.STOP_STRING
    assert result.text == "The"
    shown = ""
    for delta in deltas:
        shown += delta
        assert not any(shown.endswith(NEW_USER_TURN[:n]) for n in range(1, len(NEW_USER_TURN) + 1))
    assert shown == "The"


async def test_streamed_deltas_concatenate_to_the_final_text(service) -> None:
    for text, image in [("Describe it", _colour((10, 200, 10))), ("Tell me a story about the sea", None)]:
        deltas, result = await _collect(service, _ask(text, image))
        assert "".join(deltas) == result.text
        assert result.text == result.text.strip()
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        assert result.time_to_first_token_s is not None and 0 < result.time_to_first_token_s <= result.total_s
        assert result.dropped_turns == 0 and result.extra["dropped_images"] == 0


async def test_max_new_tokens_ends_the_reply_with_length(tiny_loaded) -> None:
    service = ModelService(tiny_loaded)
    await service.start()
    try:
        exact = GenerationParams(max_new_tokens=3, ignore_stop=True)
        _, result = await _collect(service, _ask("Count to ten"), exact)
        _, natural = await _collect(service, _ask("Count to ten"), GenerationParams(max_new_tokens=3))
    finally:
        await service.stop()
    assert result.finish_reason is FinishReason.LENGTH and result.completion_tokens == 3
    assert natural.completion_tokens <= 3
    if natural.finish_reason is FinishReason.LENGTH:
        assert natural.completion_tokens == 3


async def test_cancelled_request_frees_the_worker_for_the_next_one(tiny_loaded) -> None:
    service = ModelService(tiny_loaded, max_batch_size=1)
    await service.start()
    try:
        long_params = GenerationParams(max_new_tokens=1500, ignore_stop=True)
        first_event = asyncio.Event()

        async def consume_long() -> None:
            async for _ in service.stream(_ask("Write a very long story"), long_params):
                first_event.set()

        long_task = asyncio.create_task(consume_long())
        await asyncio.wait_for(first_event.wait(), timeout=60)
        long_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long_task
        started = time.perf_counter()
        short = _collect(service, _ask("Short one"), GenerationParams(max_new_tokens=4))
        _, result = await asyncio.wait_for(short, 30)
        waited = time.perf_counter() - started
    finally:
        await service.stop()
    assert result.finish_reason in (FinishReason.LENGTH, FinishReason.END_OF_UTTERANCE, FinishReason.STOP_STRING)
    stats = service.stats
    assert stats.finished[FinishReason.CANCELLED] == 1
    # The long request stopped a few steps after the cancel instead of running its 1500 tokens.
    assert stats.completion_tokens - result.completion_tokens < 300
    assert waited < 10


async def test_four_concurrent_greedy_requests_match_four_sequential_ones(service) -> None:
    conversations = [
        _ask("What is in this picture?", _colour((255, 0, 0))),
        _ask("Describe the colours you see here, please, in detail", _colour((0, 0, 255))),
        _ask("Hi"),
        Conversation(
            turns=(
                Turn("user", (ImagePart(_colour((0, 255, 0))), TextPart("And this one?"))),
                Turn("assistant", (TextPart("A green square."),)),
                Turn("user", (ImagePart(_colour((250, 250, 0))), TextPart("Compare them"))),
            )
        ),
    ]
    sequential = [(await _collect(service, c))[1].text for c in conversations]
    assert service.stats.largest_batch == 1
    batched = await asyncio.gather(*(_collect(service, c) for c in conversations))
    assert service.stats.largest_batch == 4
    assert [result.text for _, result in batched] == sequential
    assert len(set(sequential)) > 1  # the prompts really differ, so a mix-up would show
    for deltas, result in batched:
        assert "".join(deltas) == result.text


def _truncated_png() -> Image.Image:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue()[:60]))  # opens lazily; fails when pixels are read


async def test_one_broken_image_fails_only_its_own_request(service) -> None:
    good = [_ask("First", _colour((255, 0, 0))), _ask("Second"), _ask("Third", _colour((0, 0, 255)))]
    expected = [(await _collect(service, c))[1].text for c in good]
    outcomes = await asyncio.gather(
        *(_collect(service, c) for c in [good[0], _ask("Broken", _truncated_png()), *good[1:]]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], GenerationFailed)
    assert [outcome[1].text for outcome in outcomes[:1] + outcomes[2:]] == expected
    assert service.stats.finished[FinishReason.ERROR] == 1
    _, after = await _collect(service, good[0])  # and the service keeps serving
    assert after.text == expected[0]


async def test_a_failing_batch_is_retried_one_request_at_a_time(tmp_path, monkeypatch) -> None:
    # Its first tokens ("\n", "U") could still become "\nUser:", so no row shows text before the first
    # batched step fails: every row may be retried.
    loaded = _load(make_chain_checkpoint(tmp_path / "held-back", [":", "\n", "U", "p", " the", " the"]))
    service = ModelService(loaded, max_batch_size=8, batch_window_s=0.3)
    await service.start()
    try:
        await _retried_alone(service, monkeypatch)
    finally:
        await service.stop()


async def _retried_alone(service, monkeypatch) -> None:
    prompts = [_ask("One"), _ask("Two", _colour((9, 9, 9))), _ask("Three")]
    expected = [(await _collect(service, c))[1].text for c in prompts]
    real_forward = idefics_forward.forward

    def forward_failing_on_batches(model, **kwargs):
        if kwargs["input_ids"].shape[0] > 1:
            raise RuntimeError("simulated kernel failure on a batch")
        return real_forward(model, **kwargs)

    monkeypatch.setattr(idefics_forward, "forward", forward_failing_on_batches)
    outcomes = await asyncio.gather(*(_collect(service, c) for c in prompts))
    assert [result.text for _, result in outcomes] == expected
    assert service.stats.retries >= 1 and service.stats.largest_batch == 3


async def test_out_of_memory_reading_a_newcomers_prompt_puts_it_back_and_lowers_the_limit(
    service, monkeypatch
) -> None:
    prompts = [_ask(f"Question number {n}") for n in range(4)]
    expected = [(await _collect(service, c))[1].text for c in prompts]
    real_forward = idefics_forward.forward
    prompts_since_step = [0]
    step_sizes: set[int] = set()

    def forward_with_memory_for_two_prompts(model, **kwargs):
        rows, length = kwargs["input_ids"].shape
        if length == 1:
            step_sizes.add(rows)
            prompts_since_step[0] = 0
        else:  # the KV of two fresh prompts fits between steps, a third does not
            if prompts_since_step[0] >= 2:
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
            prompts_since_step[0] += 1
        return real_forward(model, **kwargs)

    monkeypatch.setattr(idefics_forward, "forward", forward_with_memory_for_two_prompts)
    outcomes = await asyncio.gather(*(_collect(service, c) for c in prompts))
    assert [result.text for _, result in outcomes] == expected
    assert service.stats.retries >= 1
    assert step_sizes and max(step_sizes) <= 2  # the lowered limit kept the running batch small


async def test_seeded_sampling_is_reproducible(service) -> None:
    def sampled(seed: int) -> GenerationParams:
        return GenerationParams(max_new_tokens=20, do_sample=True, temperature=1.0, top_p=1.0, seed=seed)

    conversation = _ask("Tell me something", _colour((30, 60, 90)))
    first = (await _collect(service, conversation, sampled(7)))[1].text
    again = (await _collect(service, conversation, sampled(7)))[1].text
    other = (await _collect(service, conversation, sampled(8)))[1].text
    assert first == again
    assert other != first


async def test_a_newest_turn_that_cannot_fit_raises_prompt_too_long_before_any_event(service) -> None:
    events = []
    with pytest.raises(PromptTooLong):
        async for event in service.stream(_ask("word " * 5000), GREEDY):
            events.append(event)
    assert events == []


async def test_stop_cancels_running_and_queued_requests(tiny_loaded) -> None:
    service = ModelService(tiny_loaded, max_batch_size=1)
    await service.start()
    long_params = GenerationParams(max_new_tokens=1500, ignore_stop=True)
    running = asyncio.create_task(_collect(service, _ask("Long story"), long_params))
    queued = asyncio.create_task(_collect(service, _ask("Another long story"), long_params))
    await asyncio.sleep(0.5)
    await service.stop()
    for task in (running, queued):
        _, result = await asyncio.wait_for(task, timeout=10)
        assert result.finish_reason is FinishReason.CANCELLED
    with pytest.raises(ServiceStopped):
        await _collect(service, _ask("Too late"))


async def test_a_row_that_finishes_early_is_answered_before_its_batch_ends(service) -> None:
    # Counted in decode steps, not seconds: wall-clock comparisons fail on a loaded machine.
    steps_when_answered: dict[str, int] = {}

    async def run(name: str, max_new_tokens: int) -> GenerationResult:
        params = GenerationParams(max_new_tokens, ignore_stop=True)
        async for event in service.stream(_ask(f"Request {name}"), params):
            if isinstance(event, GenerationResult):
                steps_when_answered[name] = service.stats.steps
                return event
        raise AssertionError("no result")

    short, long = await asyncio.gather(run("short", 2), run("long", 400))
    assert service.stats.largest_batch == 2  # they really shared the running batch
    assert (short.completion_tokens, long.completion_tokens) == (2, 400)
    # The short answer was read while the long one still had hundreds of steps to go.
    assert steps_when_answered["short"] < steps_when_answered["long"] - 300


async def test_cancelling_one_row_of_a_batch_leaves_the_other_running(service) -> None:
    params = GenerationParams(max_new_tokens=300, ignore_stop=True)
    first_event = asyncio.Event()

    async def cancelled_consumer() -> None:
        async for _ in service.stream(_ask("I will be cancelled"), params):
            first_event.set()

    doomed = asyncio.create_task(cancelled_consumer())
    survivor = asyncio.create_task(_collect(service, _ask("I will finish"), params))
    await asyncio.wait_for(first_event.wait(), timeout=60)
    doomed.cancel()
    deltas, result = await asyncio.wait_for(survivor, timeout=120)
    assert service.stats.largest_batch == 2
    assert result.finish_reason is FinishReason.LENGTH and result.completion_tokens == 300
    assert "".join(deltas) == result.text
    assert service.stats.finished[FinishReason.CANCELLED] == 1


@pytest.mark.parametrize("how", ["break", "aclose"])
async def test_leaving_the_stream_early_cancels_the_request(tiny_loaded, how: str) -> None:
    service = ModelService(tiny_loaded, max_batch_size=1)
    await service.start()
    try:
        stream = service.stream(_ask("A long story"), GenerationParams(max_new_tokens=1500, ignore_stop=True))
        if how == "aclose":
            await stream.__anext__()
            await stream.aclose()
        else:
            async for _ in stream:
                break
            del stream  # the loop finalizes an abandoned async generator, which cancels the request
        started = time.perf_counter()
        _, result = await asyncio.wait_for(_collect(service, _ask("Next"), GenerationParams(max_new_tokens=3)), 30)
        assert time.perf_counter() - started < 10
    finally:
        await service.stop()
    assert service.stats.finished[FinishReason.CANCELLED] == 1
    assert service.stats.completion_tokens - result.completion_tokens < 300  # not the full 1500
    assert result.completion_tokens <= 3


async def test_image_tokens_are_never_generated_even_when_the_model_wants_them(tmp_path, monkeypatch) -> None:
    loaded = _load(make_chain_checkpoint(tmp_path / "image-loving", [":", "<image>"]))
    banned = set(loaded.image_token_ids)
    outputs: list[torch.Tensor] = []
    real_choose = RowSampler.choose

    def recording_choose(self, logits):
        outputs.append(real_choose(self, logits))
        return outputs[-1]

    unbanned = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": loaded.eos_token_id}
    service = ModelService(loaded)
    await service.start()
    try:
        prompt = PromptBuilder(loaded, 4).build(_ask("Show me"), 4)
        inputs = collate(
            [prepare_prompt(loaded, prompt.input_ids, prompt.images)],
            pad_token_id=loaded.eos_token_id,
            image_token_id=loaded.image_token_ids[0],
            image_dims=image_dims(loaded),
        )
        plain = loaded.model.generate(**inputs.model_inputs("cpu"), **unbanned)
        assert plain[0, -4:].tolist()[0] in banned  # left alone, the model writes an image token
        monkeypatch.setattr(RowSampler, "choose", recording_choose)
        _, result = await _collect(service, _ask("Show me"), GenerationParams(max_new_tokens=4))
    finally:
        await service.stop()
    assert outputs and not banned & set(torch.cat(outputs).tolist())
    assert result.completion_tokens >= 1


async def test_result_reports_the_turns_dropped_to_fit_the_context(tiny_checkpoint_eou) -> None:
    long_text = "The quick brown fox jumps over the lazy dog. " * 20
    turns = []
    for n in range(8):
        turns.append(Turn("user", (TextPart(f"{n}: {long_text}"),)))
        turns.append(Turn("assistant", (TextPart(long_text),)))
    turns.append(Turn("user", (TextPart("And now?"),)))
    service = ModelService(_load(tiny_checkpoint_eou))
    await service.start()
    try:
        _, result = await _collect(
            service, Conversation(turns=tuple(turns)), GenerationParams(max_new_tokens=1500)
        )
    finally:
        await service.stop()
    assert result.dropped_turns > 0
    assert result.prompt_tokens <= service.max_positions - 1500
