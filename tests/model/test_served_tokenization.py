"""Prompts reach the model in the ids idefics-9b-instruct was trained and served with, whatever its files say.

The reference ids come from TGI's integration snapshot for idefics-9b-instruct
(huggingface/text-generation-inference, integration-tests/models/__snapshots__/test_idefics/test_idefics.json)
and from the `sentencepiece` library applied segment by segment (served_rule.py).
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from PIL import Image
from served_rule import ASSISTANT_AFTER_EOU, EOU, IMAGE, TGI_PREFILL, TGI_QUESTION, served_ids
from transformers import AutoProcessor

from model.errors import PromptTooLong
from model.loaded import LoadOptions
from model.loading import load_model
from model.preamble import load_modes
from model.prompt import TRIM_STEP_TURNS, PromptBuilder
from model.tokenization import check_tokenization
from model.types import Conversation, ImagePart, TextPart, Turn

RED = Image.new("RGB", (24, 24), "red")
BLUE = Image.new("RGB", (24, 24), "blue")


def _user(*parts) -> Turn:
    return Turn("user", tuple(TextPart(p) if isinstance(p, str) else ImagePart(p, str(id(p))) for p in parts))


def _load(directory):
    return load_model(LoadOptions(model_id=str(directory), dtype="float32", device_map=None))


def test_tgis_prompt_gives_tgis_prefill_ids_through_the_loader(llama_loaded):
    processed = llama_loaded.processor(text=["User:", RED, TGI_QUESTION])["input_ids"][0].tolist()
    assert processed == TGI_PREFILL
    built = PromptBuilder(llama_loaded, max_images=4).build(Conversation((_user(RED, TGI_QUESTION),)), 64)
    assert list(built.input_ids) == [*TGI_PREFILL, 32002, *ASSISTANT_AFTER_EOU]


def _tokenizer_variant(checkpoint, directory, files: str, legacy):
    """A copy of the checkpoint whose tokenizer files are laid out as one of the hub's variants."""
    copy = shutil.copytree(checkpoint, directory)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if legacy != "no legacy key":
        config["legacy"] = legacy
    if files == "older hub config":  # before transformers 5: added_tokens.json, no extra_special_tokens
        del config["extra_special_tokens"]
        tokens = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
        (copy / "added_tokens.json").write_text(json.dumps({t: 32000 + i for i, t in enumerate(tokens)}))
    config_path.write_text(json.dumps(config))
    if files == "tokenizer.json only":
        (copy / "tokenizer.model").unlink()
    if files == "tokenizer.model only":
        (copy / "tokenizer.json").unlink()
    return copy


LAYOUTS = [
    "tokenizer.json and tokenizer.model", "tokenizer.json only", "tokenizer.model only", "older hub config",
]  # fmt: skip


@pytest.mark.parametrize("files", LAYOUTS)
@pytest.mark.parametrize("legacy", ["no legacy key", False, True])
def test_every_tokenizer_layout_and_legacy_setting_gives_the_served_ids(
    llama_checkpoint, tmp_path, caplog, files, legacy
):
    variant = _tokenizer_variant(llama_checkpoint, tmp_path / "variant", files, legacy)
    with caplog.at_level(logging.INFO, logger="model.loading"):
        loaded = _load(variant)
    turns = (_user(RED, TGI_QUESTION), Turn("assistant", (TextPart("Once upon a time."),)), _user("More?"))
    built = PromptBuilder(loaded, max_images=4).build(Conversation(turns), 64)
    assert list(built.input_ids[: len(TGI_PREFILL)]) == TGI_PREFILL
    assert built.input_ids[len(TGI_PREFILL) + 1 : len(TGI_PREFILL) + 6] == tuple(ASSISTANT_AFTER_EOU)
    assert loaded.processor(text=list(built.items))["input_ids"][0].tolist() == list(built.input_ids)
    assert "in the served format" in caplog.text and "[1, 4911, 29901]" in caplog.text
    assert "the processor agrees" in caplog.text


def test_a_processor_loaded_the_transformers_5_way_is_not_what_prompts_use(llama_checkpoint, llama_loaded):
    """The bug this guards against: without legacy=True, "User" after <s> is 2659, not the served 4911."""
    plain = AutoProcessor.from_pretrained(llama_checkpoint)
    assert plain(text=["User:", RED, TGI_QUESTION])["input_ids"][0].tolist()[:3] == [1, 2659, 29901]
    check = check_tokenization(plain.tokenizer)
    assert check.dummy_prefix and not check.processor_agrees and "differs" in check.describe()
    # The prompt builder encodes segment by segment, so even this processor gives the served ids.
    misconfigured = type("Loaded", (), {"processor": plain, "max_positions": 2048})()
    built = PromptBuilder(misconfigured, max_images=4).build(Conversation((_user(RED, TGI_QUESTION),)), 64)
    assert list(built.input_ids) == [*TGI_PREFILL, 32002, *ASSISTANT_AFTER_EOU]


def _rendered_turn(turn: Turn) -> str:
    """One turn as IDEFICS.md's canonical format writes it (never the first thing in the prompt here)."""
    text = " ".join(p.text.strip() for p in turn.parts if isinstance(p, TextPart))
    images = sum(1 for p in turn.parts if isinstance(p, ImagePart))
    if turn.role == "assistant":
        return f"\nAssistant: {text}{EOU}"
    if not images:
        return f"\nUser: {text}{EOU}"
    return "\nUser:" + IMAGE * images + text + EOU


def test_three_turns_with_two_images_and_the_default_preamble_are_in_the_served_format(
    llama_loaded, sentencepiece_model
):
    preamble = load_modes(None)["default"]
    turns = (
        _user(RED, "What is in this photo?"),
        Turn("assistant", (TextPart("A red square, filling the whole picture."),)),
        _user(BLUE, "And in this one?\nIs it the same shape?"),
    )
    built = PromptBuilder(llama_loaded, max_images=4).build(Conversation(turns, preamble), 512)
    text = "<s>" + preamble.text + "".join(map(_rendered_turn, preamble.examples + turns)) + "\nAssistant:"
    expected = served_ids(sentencepiece_model, text)
    assert list(built.input_ids) == expected
    assert built.input_ids[-5:] == tuple(ASSISTANT_AFTER_EOU)
    # Each turn boundary after <end_of_utterance> keeps the "▁" (29871) the model saw in training.
    boundary = [32002, 29871, 13, 2659]  # <end_of_utterance> "▁" "\n" "User"
    user_boundaries = sum(1 for i in range(len(expected)) if expected[i : i + 4] == boundary)
    user_turns = sum(1 for turn in preamble.examples + turns if turn.role == "user")
    assert user_boundaries == user_turns - 1  # all but the first, which follows the instruction


def test_byte_level_bpe_checkpoints_keep_their_ids_and_say_so(tiny_checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="model.loading"):
        loaded = _load(tiny_checkpoint)
    tokenizer = loaded.processor.tokenizer
    built = PromptBuilder(loaded, max_images=4).build(Conversation((_user(RED, "What is this?"),)), 16)
    text = "<s>User:" + IMAGE + "What is this?" + EOU + "\nAssistant:"
    assert list(built.input_ids) == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert "not SentencePiece" in caplog.text


def _chat(exchanges: int) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for n in range(exchanges):
        turns += [_user(f"Question {n}: what else is there?"), Turn("assistant", (TextPart(f"Thing {n}."),))]
    return (*turns, _user("And the last one?"))


def _text_of(turns: tuple[Turn, ...]) -> str:
    return "<s>" + "".join(map(_rendered_turn, turns)).replace("\nUser:", "User:", 1) + "\nAssistant:"


def test_trimming_and_prompt_too_long_count_real_tokens(llama_loaded, sentencepiece_model):
    builder = PromptBuilder(llama_loaded, max_images=4)
    turns, room = _chat(40), 400
    built = builder.build(Conversation(turns), llama_loaded.max_positions - room)
    kept = turns[built.dropped_turns :]
    assert len(built.input_ids) == len(served_ids(sentencepiece_model, _text_of(kept))) <= room
    one_more = turns[built.dropped_turns - 2 * TRIM_STEP_TURNS :]  # trimming goes in steps of turns
    assert len(served_ids(sentencepiece_model, _text_of(one_more))) > room
    too_long = (_user("describe the picture in detail " * 400),)
    with pytest.raises(PromptTooLong) as raised:
        builder.build(Conversation(too_long), 512)
    assert f"about {len(served_ids(sentencepiece_model, _text_of(too_long)))} tokens" in str(raised.value)
