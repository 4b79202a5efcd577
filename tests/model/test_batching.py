"""Collation: our padded tensors equal the processor's own, and left padding does not change greedy output."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from transformers.models.idefics.processing_idefics import (
    image_attention_mask_for_packed_input_ids,
    incremental_to_binary_attention_mask,
)

from model.batch import collate, image_dims, most_recent_image_mask, prepare_prompt
from model.generation import pad_token_id
from model.loaded import LoadOptions
from model.loading import load_model

os.environ["HF_HUB_OFFLINE"] = "1"

GREEDY = {"max_new_tokens": 16, "do_sample": False}


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


def _colour(rgb: tuple[int, int, int], size=(40, 32)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def _items_with_three_images():
    red, blue = _colour((255, 0, 0)), _colour((0, 0, 255), (64, 20))
    items = [
        "User:", red, "what is this?<end_of_utterance>",
        "\nAssistant: A red thing.<end_of_utterance>",
        "\nUser:", blue, red, "and these two?<end_of_utterance>",
        "\nAssistant:",
    ]  # fmt: skip
    return items, [red, blue, red]


def _collate(loaded, prepared, padding_side="left"):
    return collate(
        prepared,
        pad_token_id=pad_token_id(loaded),
        image_token_id=loaded.image_token_ids[0],
        image_dims=image_dims(loaded),
        padding_side=padding_side,
    )


def _greedy(loaded, inputs: dict) -> list[list[int]]:
    length = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, **GREEDY, pad_token_id=pad_token_id(loaded))
    return out[:, length:].tolist()


def test_collation_of_one_prompt_equals_the_processor_output_and_its_greedy_tokens(loaded) -> None:
    items, images = _items_with_three_images()
    reference = loaded.processor(text=items, return_tensors="pt")
    prepared = prepare_prompt(loaded, reference["input_ids"][0].tolist(), images)
    batch = _collate(loaded, [prepared])
    assert torch.equal(batch.input_ids, reference["input_ids"])
    assert torch.equal(batch.attention_mask, reference["attention_mask"])
    assert torch.equal(batch.image_attention_mask, reference["image_attention_mask"])
    assert torch.allclose(batch.pixel_values, reference["pixel_values"])
    assert _greedy(loaded, batch.model_inputs("cpu")) == _greedy(loaded, dict(reference))


def test_text_attends_only_to_the_most_recent_image_like_transformers_helper(loaded) -> None:
    items, _ = _items_with_three_images()
    ids = loaded.processor(text=items, return_tensors="pt")["input_ids"]
    incremental, _ = image_attention_mask_for_packed_input_ids(ids.clone(), loaded.processor.tokenizer, "pt")
    expected = incremental_to_binary_attention_mask(incremental, "pt", num_classes=3)
    mask = most_recent_image_mask(ids[0], loaded.image_token_ids[0], 3)
    assert torch.equal(mask, expected[0])
    first_image = ids[0].tolist().index(loaded.image_token_ids[0])
    assert mask[:first_image].sum() == 0 and mask[first_image:].sum(dim=-1).eq(1).all()


def test_left_padded_batch_gives_each_prompt_its_own_greedy_tokens(loaded) -> None:
    items, images = _items_with_three_images()
    tokenizer = loaded.processor.tokenizer
    green = _colour((0, 255, 0))
    short = loaded.processor(text=["User:", green, "hi<end_of_utterance>\nAssistant:"], return_tensors="pt")
    prompts = [
        prepare_prompt(loaded, loaded.processor(text=items, return_tensors="pt")["input_ids"][0].tolist(), images),
        prepare_prompt(loaded, tokenizer("<s>User: no image here<end_of_utterance>\nAssistant:")["input_ids"], []),
        prepare_prompt(loaded, short["input_ids"][0].tolist(), [green]),
    ]
    alone = [_greedy(loaded, _collate(loaded, [p]).model_inputs("cpu"))[0] for p in prompts]
    batch = _collate(loaded, prompts)
    assert batch.attention_mask[1].tolist().count(0) > 0  # the batch really is padded
    assert _greedy(loaded, batch.model_inputs("cpu")) == alone
    assert len({tuple(tokens) for tokens in alone}) == 3


def test_a_prompt_whose_image_slots_and_images_disagree_is_refused(loaded) -> None:
    items, images = _items_with_three_images()
    ids = loaded.processor(text=items, return_tensors="pt")["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="image slots"):
        prepare_prompt(loaded, ids, images[:2])
