"""The engine's multi-row linears through oneDNN with packed weights: the same greedy answers, only where meant."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from model.loaded import LoadOptions
from model.loading import load_model
from model.packed_linears import PackedLinears, available, packed_linears_for
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, TextPart, Turn


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


@pytest.fixture
def packed_calls(monkeypatch) -> list[tuple[int, ...]]:
    """The input shapes of every oneDNN linear call."""
    calls: list[tuple[int, ...]] = []
    real = torch.ops.mkldnn._linear_pointwise

    def recording(x, *args):
        calls.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", recording)
    return calls


def test_onednn_linears_are_found_on_this_cpu_build() -> None:
    assert available()


def test_multi_row_calls_take_the_packed_route_only_while_engaged_on_that_thread(loaded, packed_calls) -> None:
    packed = packed_linears_for(loaded.model)
    assert packed is not None and len(packed) > 0
    packed_calls.clear()  # (the first call probes the ops)
    head = loaded.model.model.layers[0].mlp.down_proj
    rows, one = torch.randn(6, head.in_features), torch.randn(1, 1, head.in_features)
    with torch.inference_mode():
        outside = head(rows)
        assert torch.equal(outside, F.linear(rows, head.weight)) and not packed_calls
        seen_elsewhere: list[torch.Tensor] = []
        with packed.engaged():
            inside = head(rows)
            assert packed_calls == [(6, head.in_features)]
            assert torch.equal(head(one), F.linear(one, head.weight))  # one row stays with F.linear
            other = threading.Thread(target=lambda: seen_elsewhere.append(head(rows)))
            other.start()
            other.join()
        assert len(packed_calls) == 1  # neither the one-row call nor the other thread's took the route
        assert torch.equal(seen_elsewhere[0], outside)
        assert torch.allclose(inside, outside, atol=1e-5, rtol=1e-5)
        assert torch.equal(head(rows), outside)  # after the block, F.linear again


def test_packing_stops_at_its_memory_budget(tiny_checkpoint, packed_calls) -> None:
    model = load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None)).model
    nothing = PackedLinears(model, budget_bytes=0)
    assert len(nothing) == 0 and nothing.bytes == 0
    first = model.model.layers[0].self_attn.q_proj
    one = PackedLinears(model, budget_bytes=first.weight.numel() * first.weight.element_size())
    assert len(one) == 1
    rows = torch.randn(4, first.in_features)
    later = model.model.layers[-1].mlp.down_proj
    wide = torch.randn(4, later.in_features)
    with torch.inference_mode(), one.engaged():
        assert torch.allclose(first(rows), F.linear(rows, first.weight), atol=1e-5, rtol=1e-5)
        assert packed_calls == [(4, first.in_features)]  # the packed route
        assert torch.equal(later(wide), F.linear(wide, later.weight))  # beyond the budget: F.linear
        assert len(packed_calls) == 1


def _ask(text: str, rgb: tuple[int, int, int] | None = None) -> Conversation:
    parts = (TextPart(text),) if rgb is None else (ImagePart(Image.new("RGB", (40, 32), rgb)), TextPart(text))
    return Conversation(turns=(Turn(role="user", parts=parts),))


async def _answers(service: ModelService, conversations: list[Conversation]) -> list[str]:
    async def one(conversation: Conversation) -> str:
        async for event in service.stream(conversation, GenerationParams(max_new_tokens=16, ignore_stop=True)):
            if isinstance(event, GenerationResult):
                return event.text
        raise AssertionError("no result")

    first = await asyncio.gather(*(one(c) for c in conversations[:3]))  # read together, decoded together
    running = asyncio.ensure_future(asyncio.gather(*(one(c) for c in conversations[3:5])))
    await asyncio.sleep(0.05)
    late = await one(conversations[5])  # a long newcomer, read in chunks beside the running rows
    return [*first, *await running, late]


async def test_greedy_answers_are_the_same_with_packed_linears_on_and_off(loaded, packed_calls) -> None:
    conversations = [
        _ask("Hello there"),
        _ask("What is this?", (255, 0, 0)),
        _ask("Tell me a story about a cat"),
        _ask("And this one?", (0, 0, 255)),
        _ask("Why"),
        _ask("please read all of this carefully before you answer " * 12),
    ]
    packed_linears_for(loaded.model)  # made (and its ops probed) before counting
    answers = {}
    for packed in (False, True):
        service = ModelService(loaded, cpu_packed_linears=packed, prefix_cache_bytes=0, prefill_chunk_tokens=32)
        await service.start()
        try:
            before = len(packed_calls)
            answers[packed] = await _answers(service, conversations)
        finally:
            await service.stop()
        assert (len(packed_calls) > before) == packed  # the route ran exactly when it was on
    assert answers[True] == answers[False]
    assert len(set(answers[False])) >= 4  # the prompts really lead to different answers


def test_the_output_head_keeps_its_added_tokens_on_the_packed_route(loaded, packed_calls) -> None:
    packed = packed_linears_for(loaded.model)
    packed_calls.clear()
    head = loaded.model.lm_head  # IdeficsDecoupledLinear: the vocabulary, then the IDEFICS tokens
    rows = torch.randn(5, head.in_features)
    with torch.inference_mode():
        outside = head(rows)
        with packed.engaged():
            inside = head(rows)
    assert inside.shape == outside.shape == (5, head.out_features + head.out_additional_features)
    assert len(packed_calls) == 2  # the vocabulary's weight and the added tokens' linear
    assert torch.allclose(inside, outside, atol=1e-5, rtol=1e-5)
