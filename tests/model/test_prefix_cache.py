"""The prefix KV cache: same tokens with it on and off, only new tokens prefilled, bounded in bytes."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch
from PIL import Image

from model.loaded import LoadOptions
from model.loading import load_model
from model.prefix_cache import BLOCK_TOKENS, PrefixCache
from model.service import ModelService
from model.types import Conversation, GenerationParams, GenerationResult, ImagePart, Preamble, TextPart, Turn

PARAMS = GenerationParams(max_new_tokens=12, ignore_stop=True)
IMAGE_TOKEN = 7
PREAMBLE = Preamble(
    name="test",
    text="Assistant is a careful visual assistant that answers questions about images truthfully.",
    examples=(
        Turn("user", (ImagePart(Image.new("RGB", (40, 40), (9, 99, 9)), key="sha-example"), TextPart("What?"))),
        Turn("assistant", (TextPart("A green square."),)),
    ),
)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


def _image(rgb, key):
    return ImagePart(Image.new("RGB", (40, 32), rgb), key=key)


def _first(question: str, image: ImagePart | None = None, preamble=None) -> Conversation:
    parts = (image, TextPart(question)) if image is not None else (TextPart(question),)
    return Conversation(turns=(Turn("user", parts),), preamble=preamble)


def _then(conversation: Conversation, reply: str, question: str, image: ImagePart | None = None) -> Conversation:
    parts = (image, TextPart(question)) if image is not None else (TextPart(question),)
    turns = (*conversation.turns, Turn("assistant", (TextPart(reply),)), Turn("user", parts))
    return Conversation(turns=turns, preamble=conversation.preamble)


async def _answer(service: ModelService, conversation: Conversation, params=PARAMS) -> GenerationResult:
    async for event in service.stream(conversation, params):
        if isinstance(event, GenerationResult):
            return event
    raise AssertionError("no result")


async def _answers(service, conversations, params=PARAMS) -> list[str]:
    results = await asyncio.gather(*(_answer(service, c, params) for c in conversations))
    return [result.text for result in results]


async def _served(loaded, prefix_cache_bytes: int, body):
    service = ModelService(loaded, prefix_cache_bytes=prefix_cache_bytes, batch_window_s=0.2)
    await service.start()
    try:
        return await body(service), service.stats
    finally:
        await service.stop()


async def test_greedy_tokens_are_the_same_with_the_cache_on_and_off_alone_and_batched(loaded) -> None:
    red, blue = _image((200, 10, 10), "sha-red"), _image((10, 10, 200), "sha-blue")
    chats = [_first("What is this?", red, PREAMBLE), _first("Hello there", None, PREAMBLE), _first("Hm?", blue)]

    async def conversation_rounds(service):
        first = await _answers(service, chats)  # batched: different lengths, left padding
        follow_ups = [_then(c, text, "And what colour is it?") for c, text in zip(chats, first)]
        alone = [await _answers(service, [follow_ups[0]])]
        batched = await _answers(service, [*follow_ups, _then(follow_ups[2], "ok", "Again", red)])
        return first, alone, batched

    off, _ = await _served(loaded, 0, conversation_rounds)
    on, stats = await _served(loaded, 64 * 2**20, conversation_rounds)
    assert on == off
    assert stats.prompt_tokens_reused > stats.prompt_tokens_computed / 2  # the cache really served them
    assert len(set(off[0])) == 3  # the prompts really lead to different answers


async def test_a_follow_up_prefills_only_its_new_tokens(loaded) -> None:
    first = _first("Describe this picture in detail please. " * 8, _image((1, 2, 3), "sha-1"), PREAMBLE)

    async def two_turns(service):
        reply = (await _answer(service, first)).text
        before = service.stats
        follow_up = _then(first, reply, "Why?")
        result = await _answer(service, follow_up)
        after = service.stats
        return result, after.prompt_tokens_computed - before.prompt_tokens_computed

    (result, computed), stats = await _served(loaded, 64 * 2**20, two_turns)
    # "<end_of_utterance>\nUser: Why?<end_of_utterance>\nAssistant:" is ~20 tokens here; the reply's text
    # may tokenize differently from the tokens the model wrote, so it may be computed again too.
    new_tokens = 24 + PARAMS.max_new_tokens
    assert computed <= new_tokens + BLOCK_TOKENS < result.prompt_tokens / 3
    assert stats.prefix_cache_bytes_used > 0


async def test_the_preamble_is_computed_once_and_shared_by_two_chats(loaded) -> None:
    async def two_chats(service):
        await _answer(service, _first("First person asking", _image((5, 5, 5), "sha-a"), PREAMBLE))
        before = service.stats.prompt_tokens_reused
        await _answer(service, _first("Someone else entirely", None, PREAMBLE))
        return service.stats.prompt_tokens_reused - before

    reused, _ = await _served(loaded, 64 * 2**20, two_chats)
    preamble_tokens = len(loaded.processor.tokenizer(PREAMBLE.text)["input_ids"])
    assert reused >= preamble_tokens - BLOCK_TOKENS


async def test_trimming_old_turns_recomputes_and_gives_the_uncached_answers(loaded) -> None:
    small_context = dataclasses.replace(loaded, max_positions=640)  # trimming after a few turns: fast
    question = "tell me about the picture, {n}; " * 3
    chats = [_first(question.format(n=0), _image((50, 60, 70), "sha-t"))]
    for n in range(1, 13):
        chats.append(_then(chats[-1], f"answer {n} " * 6, question.format(n=n)))

    async def growing_conversation(service):
        return [await _answer(service, chat) for chat in chats[6:]]

    off, _ = await _served(small_context, 0, growing_conversation)
    on, stats = await _served(small_context, 64 * 2**20, growing_conversation)
    assert [r.text for r in on] == [r.text for r in off]
    dropped = [r.dropped_turns for r in on]
    assert dropped[0] == 0 and len(set(dropped)) >= 3  # the start moved twice as the conversation grew
    assert stats.prompt_tokens_reused > stats.prompt_tokens_computed  # and between moves it was reused


def _kv(length: int, fill: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((2, length, 4), fill), torch.full((2, length, 4), -fill)) for _ in range(3)]


def test_the_cache_stays_within_its_byte_budget_under_500_conversations() -> None:
    preamble = list(range(100, 100 + 3 * BLOCK_TOKENS))
    block_bytes = 3 * 2 * 2 * BLOCK_TOKENS * 4 * 4  # layers, keys+values, heads, tokens, head_dim, float32
    cache = PrefixCache(capacity_bytes=40 * block_bytes)
    for conversation in range(500):
        ids = preamble + [1000 + conversation] * (2 * BLOCK_TOKENS)
        match = cache.lookup(ids, (), IMAGE_TOKEN, limit=len(ids) - 1)
        assert conversation == 0 or match.length >= len(preamble)  # the shared preamble stays
        cache.store(ids, (), IMAGE_TOKEN, _kv(len(ids), float(conversation)))
        assert cache.bytes_used <= cache.capacity_bytes
    latest = preamble + [1499] * (2 * BLOCK_TOKENS)
    match = cache.lookup(latest, (), IMAGE_TOKEN, limit=len(latest))
    assert match.length == len(latest) and torch.equal(match.layers[0][0][0, :, -1], torch.full((2, 4), 499.0))
    oldest = preamble + [1000] * (2 * BLOCK_TOKENS)
    assert cache.lookup(oldest, (), IMAGE_TOKEN, limit=len(oldest)).length == len(preamble)  # shared, kept


def test_tokens_after_an_image_match_only_with_the_same_image() -> None:
    ids = [1] * 5 + [IMAGE_TOKEN] + [2] * (3 * BLOCK_TOKENS)
    cache = PrefixCache(capacity_bytes=2**20)
    cache.store(ids, ("sha-cat",), IMAGE_TOKEN, _kv(len(ids), 1.0))
    assert cache.lookup(ids, ("sha-cat",), IMAGE_TOKEN, limit=len(ids)).length == 3 * BLOCK_TOKENS
    assert cache.lookup(ids, ("sha-dog",), IMAGE_TOKEN, limit=len(ids)) is None  # same tokens, other image
    assert cache.lookup(ids, (None,), IMAGE_TOKEN, limit=len(ids)) is None  # an image without a key
    text_only = [3] * (2 * BLOCK_TOKENS)
    cache.store(text_only, (), IMAGE_TOKEN, _kv(len(text_only), 2.0))
    assert cache.lookup(text_only + [4], (), IMAGE_TOKEN, limit=len(text_only)).length == len(text_only)
