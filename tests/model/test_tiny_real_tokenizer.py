"""make-tiny-model --tokenizer: a tiny checkpoint with idefics's real vocabulary, in the hub's file layout."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image
from served_rule import TGI_PREFILL, TGI_QUESTION

from bot.cli import main as cli_main
from model.loaded import LoadOptions
from model.loading import load_model
from model.tiny import make_tiny_checkpoint

FIXTURE_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
TGI_ITEMS = ["User:", Image.new("RGB", (30, 30), "red"), TGI_QUESTION]


def _load(directory):
    return load_model(LoadOptions(model_id=str(directory), dtype="float32", device_map=None))


def test_the_fixture_is_the_documented_llama_tokenizer(llama_tokenizer_file, sentencepiece_model):
    assert hashlib.sha256(llama_tokenizer_file.read_bytes()).hexdigest() == FIXTURE_SHA256
    assert FIXTURE_SHA256 in (llama_tokenizer_file.parent / "README.md").read_text()
    text = "The cat is looking out of the window at the street below."
    expected = [450, 6635, 338, 3063, 714, 310, 278, 3474, 472, 278, 11952, 2400, 29889]  # its README says
    assert sentencepiece_model.encode(text) == expected


def test_the_cli_writes_the_hub_layout_with_the_real_vocabulary(tmp_path, llama_tokenizer_file, capsys):
    directory = tmp_path / "tiny-llama"
    assert cli_main(["make-tiny-model", str(directory), "--tokenizer", str(llama_tokenizer_file)]) == 0
    assert f"MODEL_ID={directory}" in capsys.readouterr().out
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (directory / name).is_file(), name
    assert hashlib.sha256((directory / "tokenizer.model").read_bytes()).hexdigest() == FIXTURE_SHA256
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"
    assert "legacy" not in config  # as transformers 5 saves it: the case that used to go wrong
    special = json.loads((directory / "special_tokens_map.json").read_text())
    assert special["pad_token"] == "<unk>" and "<end_of_utterance>" in special["additional_special_tokens"]
    loaded = _load(directory)
    tokenizer = loaded.processor.tokenizer
    assert len(tokenizer) == 32003 and loaded.model.config.vocab_size == 32000
    idefics_tokens = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    assert tokenizer.convert_tokens_to_ids(idefics_tokens) == [32000, 32001, 32002]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 0)


def test_a_tokenizer_json_works_as_the_source_too(tmp_path, llama_checkpoint):
    source = llama_checkpoint / "tokenizer.json"
    directory = make_tiny_checkpoint(tmp_path / "from-json", tokenizer_path=source)
    assert not (directory / "tokenizer.model").exists()
    assert _load(directory).processor(text=TGI_ITEMS)["input_ids"][0].tolist() == TGI_PREFILL


def test_a_file_that_is_not_a_tokenizer_is_refused_clearly(tmp_path, capsys):
    broken = tmp_path / "tokenizer.model"
    broken.write_text("not a sentencepiece model")
    assert cli_main(["make-tiny-model", str(tmp_path / "out"), "--tokenizer", str(broken)]) == 2
    assert "is not a SentencePiece model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _greedy_pieces(loaded, items, max_new_tokens=6) -> list[str]:
    inputs = loaded.processor(text=items, return_tensors="pt")
    with torch.no_grad():
        output = loaded.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, bad_words_ids=[[32000], [32001]]
        )
    new_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
    return loaded.processor.tokenizer.convert_ids_to_tokens(new_ids)


@pytest.mark.parametrize(
    "knob, expected", [({"eou_bias": 30.0}, "<end_of_utterance>"), ({"chatty_word": " the"}, "\u2581the")]
)
def test_the_reply_shaping_knobs_work_with_the_real_tokenizer(tmp_path, llama_tokenizer_file, knob, expected):
    loaded = _load(make_tiny_checkpoint(tmp_path / "knob", tokenizer_path=llama_tokenizer_file, **knob))
    items = ["User:", TGI_ITEMS[1], "What is this?<end_of_utterance>", "\nAssistant:"]
    pieces = _greedy_pieces(loaded, items)
    assert pieces[0] != expected and pieces[1:3] == [expected, expected]
