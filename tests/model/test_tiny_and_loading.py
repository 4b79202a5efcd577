"""The tiny checkpoint maker and the loader: round trips, 4-bit on CPU, image-dependence, clear errors."""

from __future__ import annotations

import os
import time

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _greedy_reply(model, processor, items, max_new_tokens=6) -> list[int]:
    inputs = processor(text=items)
    banned = [[processor.tokenizer.convert_tokens_to_ids(t)] for t in (IMAGE_TOKEN, FAKE_IMAGE_TOKEN)]
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, bad_words_ids=banned
        )
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def test_tiny_checkpoint_loads_with_auto_classes_quickly(tiny_checkpoint):
    started = time.perf_counter()
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    assert time.perf_counter() - started < 2.0
    assert type(model).__name__ == "IdeficsForVisionText2Text"
    assert type(processor).__name__ == "IdeficsProcessor"
    assert model.config.max_position_embeddings == 2048
    assert model.config.hidden_size >= 64 and model.config.vision_config.embed_dim >= 64


def test_tiny_tokenizer_has_idefics_specials_and_single_token_role_words(tiny_checkpoint):
    tokenizer = AutoProcessor.from_pretrained(tiny_checkpoint).tokenizer
    special_ids = tokenizer.convert_tokens_to_ids([FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE])
    assert len(set(special_ids)) == 3 and tokenizer.unk_token_id not in special_ids
    assert tokenizer.tokenize("\nUser:") == ["Ċ", "User", ":"]
    assert tokenizer.tokenize("\nAssistant:") == ["Ċ", "Assistant", ":"]
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"


def test_different_images_give_different_greedy_replies(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint).eval()
    replies = set()
    for colour in ("red", "blue", "green"):
        image = Image.new("RGB", (40, 40), colour)
        items = ["User:", image, "What is this?<end_of_utterance>", "\nAssistant:"]
        replies.add(tuple(_greedy_reply(model, processor, items)))
    assert len(replies) == 3


def test_eou_checkpoint_says_end_of_utterance_within_two_tokens(tiny_checkpoint_eou):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint_eou)
    model = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint_eou).eval()
    eou_id = processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    prompts = [
        ["User: hello there, how are you?<end_of_utterance>", "\nAssistant:"],
        ["User:", Image.new("RGB", (40, 40), "red"), "What is this?<end_of_utterance>", "\nAssistant:"],
    ]
    for items in prompts:
        reply = _greedy_reply(model, processor, items, max_new_tokens=4)
        assert eou_id in reply[:2], processor.tokenizer.convert_ids_to_tokens(reply)
        assert reply[0] != eou_id  # the model still says something of its own first


def test_small_size_has_tens_of_millions_of_parameters(tmp_path):
    from model.tiny import make_tiny_checkpoint

    directory = make_tiny_checkpoint(tmp_path / "small", size="small")
    model = AutoModelForImageTextToText.from_pretrained(directory)
    assert 10_000_000 <= sum(p.numel() for p in model.parameters()) < 100_000_000
    assert os.path.exists(directory / "processor_config.json")
