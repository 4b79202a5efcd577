"""Chunked prefill: a long newcomer's prompt is read between decode steps, so running rows keep streaming;
and each row's image states are computed once, not at every step."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from model import idefics_forward
from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, TextDelta, TextPart, Turn

LONG_PROMPT = "please read all of this carefully before you answer my question " * 24


@pytest.fixture(scope="module")
def chatty(tiny_checkpoint_chatty):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint_chatty), dtype="float32", device_map=None))


def _ask(text: str, image: ImagePart | None = None) -> Conversation:
    parts = (image, TextPart(text)) if image is not None else (TextPart(text),)
    return Conversation(turns=(Turn("user", parts),))


async def _forwards_while_a_long_prompt_joins(loaded, monkeypatch, chunk: int) -> list[tuple[int, int]]:
    """(rows, tokens) of every forward pass from a long newcomer's arrival until its first text."""
    calls: list[tuple[int, int]] = []
    real_forward = idefics_forward.forward

    def recording(model, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return real_forward(model, **kwargs)

    service = ModelService(loaded, prefill_chunk_tokens=chunk, prefix_cache_bytes=0, batch_window_s=0)
    await service.start()
    try:
        running = service.stream(_ask("Talk"), GenerationParams(max_new_tokens=2000, ignore_stop=True))
        await running.__anext__()  # the running row streams
        monkeypatch.setattr(idefics_forward, "forward", recording)
        newcomer = service.stream(_ask(LONG_PROMPT), GenerationParams(max_new_tokens=4, ignore_stop=True))
        async for event in newcomer:
            if isinstance(event, TextDelta):
                break
        monkeypatch.setattr(idefics_forward, "forward", real_forward)
        await newcomer.aclose()
        await running.aclose()
    finally:
        await service.stop()
    return calls


async def test_a_running_row_keeps_getting_tokens_while_a_long_newcomer_is_prefilled(chatty, monkeypatch) -> None:
    chunked = await _forwards_while_a_long_prompt_joins(chatty, monkeypatch, chunk=32)
    prompt_chunks = [index for index, (_rows, tokens) in enumerate(chunked) if tokens > 1]
    assert len(prompt_chunks) >= 8 and all(chunked[i][1] <= 32 for i in prompt_chunks)
    steps_between = [chunked[i] for i in range(prompt_chunks[0], prompt_chunks[-1]) if chunked[i][1] == 1]
    assert len(steps_between) >= len(prompt_chunks) - 1  # a decode step of the running row after each chunk

    whole = await _forwards_while_a_long_prompt_joins(chatty, monkeypatch, chunk=0)
    assert [tokens for _rows, tokens in whole if tokens > 1] == [max(tokens for _r, tokens in whole)]  # one pass


async def test_image_states_are_computed_once_per_request_and_reused_by_key(tiny_checkpoint, monkeypatch) -> None:
    loaded = load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))
    resampler = type(loaded.model.model.perceiver_resampler)
    real_forward = resampler.forward
    runs: list[int] = []

    def counting(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        runs.append(out.shape[0])
        return out

    monkeypatch.setattr(resampler, "forward", counting)
    image = ImagePart(Image.new("RGB", (40, 40), (120, 30, 200)), key="sha-purple")
    service = ModelService(loaded, batch_window_s=0)
    await service.start()
    try:
        params = GenerationParams(max_new_tokens=20, ignore_stop=True)
        first = await _result(service, _ask("What is it?", image), params)
        assert first.completion_tokens == 20 and runs == [1]  # one image, resampled once for 20 steps
        await _result(service, _ask("And again?", image), params)
        assert runs == [1]  # the same image (by key) is not resampled again
    finally:
        await service.stop()


async def _result(service, conversation, params) -> GenerationResult:
    async for event in service.stream(conversation, params):
        if isinstance(event, GenerationResult):
            return event
    raise AssertionError("no result")



async def test_newcomers_arriving_together_are_read_in_one_padded_pass_with_the_same_answers(
    chatty, monkeypatch
) -> None:
    questions = ["Hello there", "What is in the picture, in a few words", "Tell me a story"]
    greedy = GenerationParams(max_new_tokens=12, ignore_stop=True)
    service = ModelService(chatty, prefix_cache_bytes=0, batch_window_s=0.5)
    await service.start()
    try:
        alone = [await _answer(service, question, greedy) for question in questions]
        calls: list[tuple[int, int]] = []
        real_forward = idefics_forward.forward

        def recording(model, **kwargs):
            calls.append(tuple(kwargs["input_ids"].shape))
            return real_forward(model, **kwargs)

        monkeypatch.setattr(idefics_forward, "forward", recording)
        together = await asyncio.gather(*(_answer(service, question, greedy) for question in questions))
        monkeypatch.setattr(idefics_forward, "forward", real_forward)
        phases = service.stats.phase_total_s
    finally:
        await service.stop()
    assert together == alone  # left padding changes no row's greedy tokens
    prompt_passes = [(rows, tokens) for rows, tokens in calls if tokens > 1]
    assert len(prompt_passes) == 1 and prompt_passes[0][0] == len(questions)
    assert {"admit", "prefill", "step"} <= set(phases)  # the worker's time, phase by phase


async def _answer(service: ModelService, question: str, params: GenerationParams) -> str:
    result = None
    async for event in service.stream(_ask(question), params):
        if isinstance(event, GenerationResult):
            result = event
    return result.text
