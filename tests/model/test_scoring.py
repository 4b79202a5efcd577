"""Option scoring: the service ranks options by how likely the model finds them as the whole reply."""

from __future__ import annotations

import math
import os
import threading

import pytest
import torch
from chain_checkpoint import make_chain_checkpoint
from PIL import Image

from model.batch import collate, image_dims, prepare_prompt
from model.generation import pad_token_id
from model.loaded import LoadOptions
from model.loading import load_model
from model.prompt import PromptBuilder
from model.scoring import continuation_ids
from model.service import ModelService
from model.types import Conversation, ImagePart, TextPart, Turn

os.environ["HF_HUB_OFFLINE"] = "1"


def _load(directory):
    return load_model(LoadOptions(model_id=str(directory), dtype="float32", device_map=None))


def _question(image: Image.Image | None = None) -> Conversation:
    parts = (ImagePart(image), TextPart("Which animal is it?")) if image else (TextPart("Which animal is it?"),)
    return Conversation(turns=(Turn("user", parts),))


@pytest.fixture(scope="module")
def cat_loving(tmp_path_factory):
    """A tiny model that, right after the prompt's final ':', strongly prefers the token ' cat'."""
    return _load(make_chain_checkpoint(tmp_path_factory.mktemp("cat-loving"), [":", " cat"]))


async def test_the_option_the_model_is_biased_to_ranks_first(cat_loving) -> None:
    service = ModelService(cat_loving)
    await service.start()
    try:
        options = ["dog", "cat", "bird", "cat and a dog"]
        scores = await service.score_options(_question(Image.new("RGB", (30, 30), (90, 60, 30))), options)
        detailed = await service.score_options_detailed(_question(), options)
    finally:
        await service.stop()
    assert len(scores) == len(options) and all(math.isfinite(s) and s < 0 for s in scores)
    assert max(range(len(options)), key=scores.__getitem__) == 1
    assert [d.option for d in detailed] == options
    assert max(detailed, key=lambda d: d.mean_log_prob).option == "cat"


async def test_scores_equal_an_unpadded_forward_pass_over_each_option(tiny_checkpoint) -> None:
    loaded = _load(tiny_checkpoint)
    conversation = _question(Image.new("RGB", (30, 30), (10, 200, 60)))
    options = ["a", "a much longer answer with many more tokens", "maybe"]
    service = ModelService(loaded, max_batch_size=2)  # two chunks, one of them padded
    await service.start()
    try:
        scores = await service.score_options(conversation, options)
    finally:
        await service.stop()
    tokenizer, eou = loaded.processor.tokenizer, loaded.end_of_utterance_id
    for option, score in zip(options, scores):
        continuation = continuation_ids(tokenizer, option, eou)
        prompt = PromptBuilder(loaded, 4).build(conversation, len(continuation))
        full = prepare_prompt(loaded, [*prompt.input_ids, *continuation], prompt.images)
        batch = collate([full], pad_token_id=pad_token_id(loaded), image_token_id=loaded.image_token_ids[0],
                        image_dims=image_dims(loaded))  # fmt: skip
        with torch.inference_mode():
            logits = loaded.model(**batch.model_inputs("cpu")).logits[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        start = len(prompt.input_ids)
        expected = sum(float(log_probs[start + t - 1, token]) for t, token in enumerate(continuation))
        assert score == pytest.approx(expected, abs=1e-3)


def test_an_option_is_tokenized_as_the_model_would_write_it_after_the_prompt(tiny_checkpoint) -> None:
    loaded = _load(tiny_checkpoint)
    tokenizer, eou = loaded.processor.tokenizer, loaded.end_of_utterance_id
    plain = continuation_ids(tokenizer, "The cat sat", eou)
    in_context = tokenizer("\nAssistant: The cat sat", add_special_tokens=False)["input_ids"]
    assert plain[-1] == eou and in_context[-(len(plain) - 1) :] == plain[:-1]
    literal = continuation_ids(tokenizer, "a <image> here", eou)
    assert not set(literal[:-1]) & {*loaded.image_token_ids, eou}  # option text stays literal
    assert tokenizer.decode(literal[:-1]) == " a <image> here"


async def test_scoring_runs_on_the_worker_thread_not_the_event_loop(tiny_checkpoint, monkeypatch) -> None:
    loaded = _load(tiny_checkpoint)
    threads: list[str] = []
    real_forward = loaded.model.forward

    def recording_forward(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", recording_forward)
    service = ModelService(loaded)
    await service.start()
    try:
        await service.score_options(_question(), ["yes", "no"])
    finally:
        await service.stop()
    assert threads and threading.main_thread().name not in threads
