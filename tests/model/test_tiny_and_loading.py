"""The tiny checkpoint maker and the loader: round trips, 4-bit on CPU, image-dependence, clear errors."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from model.errors import ModelLoadError
from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN, LoadOptions
from model.loading import load_model, resolve_dtype


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


# --- the loader -------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_model_round_trip_fills_loaded_model_from_the_checkpoint(tiny_checkpoint, no_network):
    loaded = load_model(LoadOptions(model_id=str(tiny_checkpoint)))
    tokenizer = loaded.processor.tokenizer
    assert loaded.max_positions == 2048
    assert loaded.end_of_utterance_id == tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    assert loaded.eos_token_id == tokenizer.convert_tokens_to_ids("</s>")
    assert loaded.image_token_ids == tuple(tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, FAKE_IMAGE_TOKEN]))
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert not loaded.model.training and loaded.load_seconds > 0
    direct = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint).eval()
    items = ["User:", Image.new("RGB", (40, 40), "purple"), "Hi<end_of_utterance>", "\nAssistant:"]
    assert _greedy_reply(loaded.model, loaded.processor, items) == _greedy_reply(
        direct, loaded.processor, items
    )


def test_load_model_logs_processor_weights_and_placement(tiny_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="model.loading"):
        load_model(LoadOptions(model_id=str(tiny_checkpoint)))
    text = caplog.text
    assert "Processor IdeficsProcessor loaded" in text
    assert "parameters" in text and "placed on cpu" in text and "loaded in" in text


def test_4bit_load_runs_on_cpu_with_embeddings_and_head_unquantized(tiny_checkpoint, no_network):
    import bitsandbytes as bnb

    loaded = load_model(LoadOptions(model_id=str(tiny_checkpoint), quantization="4bit"))
    model = loaded.model
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert model.model.embed_tokens.weight.dtype == torch.float32
    items = ["User:", Image.new("RGB", (40, 40), "red"), "What?<end_of_utterance>", "\nAssistant:"]
    assert len(_greedy_reply(model, loaded.processor, items, max_new_tokens=3)) == 3


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as raised:
        load_model(LoadOptions(model_id=str(tmp_path / "nowhere")))
    assert "MODEL_ID" in str(raised.value)


@pytest.mark.parametrize(
    "removed, named",
    [
        (("model.safetensors",), "weights"),
        (("config.json",), "config.json"),
        (("processor_config.json",), "image processor"),
        (("tokenizer.json", "tokenizer_config.json"), "tokenizer"),
    ],
)
def test_incomplete_directory_names_what_is_missing(tiny_checkpoint, tmp_path, removed, named):
    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "partial"))
    for name in removed:
        (copy / name).unlink()
    with pytest.raises(ModelLoadError, match="incomplete") as raised:
        load_model(LoadOptions(model_id=str(copy)))
    assert named in str(raised.value) and "download" in str(raised.value)


def test_hub_id_without_network_says_how_to_predownload(no_network):
    with pytest.raises(ModelLoadError) as raised:
        load_model(LoadOptions(model_id="made-up-org/idefics-that-does-not-exist"))
    message = str(raised.value)
    assert "hf download made-up-org/idefics-that-does-not-exist" in message
    assert "MODEL_ID" in message and "\n" not in message


def test_quantization_without_bitsandbytes_says_how_to_install(tiny_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what an uninstalled package looks like
    with pytest.raises(ModelLoadError, match="bitsandbytes") as raised:
        load_model(LoadOptions(model_id=str(tiny_checkpoint), quantization="4bit"))
    assert "pip install" in str(raised.value) and "7 GB" in str(raised.value)


def test_out_of_memory_names_4bit_and_the_memory_each_mode_needs(tiny_checkpoint, monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", exhausted)
    with pytest.raises(ModelLoadError) as raised:
        load_model(LoadOptions(model_id=str(tiny_checkpoint)))
    message = str(raised.value)
    assert "MODEL_QUANTIZATION=4bit" in message
    assert all(need in message for need in ("20 GB", "10 GB", "7 GB"))


@pytest.mark.parametrize("field, value", [("dtype", "float8"), ("quantization", "3bit")])
def test_unknown_dtype_or_quantization_is_rejected_before_loading(tiny_checkpoint, field, value):
    options = LoadOptions(model_id=str(tiny_checkpoint), **{field: value})
    with pytest.raises(ModelLoadError, match=value):
        load_model(options)


def test_auto_dtype_is_float32_on_cpu():
    if torch.cuda.is_available():
        assert resolve_dtype("auto") in (torch.bfloat16, torch.float16)
    else:
        assert resolve_dtype("auto") == torch.float32


def test_the_proportional_size_has_idefics_9b_image_path_proportions():
    """64 latents per image and a cross-attention layer every 4 text layers, as idefics-9b has."""
    from model.tiny import build_tokenizer, tiny_config

    config = tiny_config(build_tokenizer(), "proportional")
    small = tiny_config(build_tokenizer(), "small")
    assert config.perceiver_config.resampler_n_latents == 64
    assert config.cross_layer_interval == 4 and config.num_hidden_layers % 4 == 0
    assert config.num_hidden_layers // config.cross_layer_interval >= 2
    assert 0.25 <= config.vision_config.embed_dim / config.hidden_size <= 0.35  # 9b: 1280 / 4096
    assert small.perceiver_config.resampler_n_latents == 4 and small.cross_layer_interval == 1
