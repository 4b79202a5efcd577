"""Streaming with idefics's real SentencePiece pieces: every space and newline stays, "\\nUser:" is cut.

SentencePiece marks a word's leading space with "▁" and drops it when a slice starting with that piece is
decoded on its own, so naive per-token decoding shows "Thecat". Its newline is the byte piece <0x0A>.
"""

from __future__ import annotations

import pytest
from chain_checkpoint import make_chain_checkpoint
from PIL import Image

from model.loaded import LoadOptions
from model.loading import load_model
from model.service import ModelService
from model.stopping import NEW_USER_TURN, IncrementalDecoder, RowStopper
from model.types import (
    Conversation,
    FinishReason,
    GenerationParams,
    GenerationResult,
    ImagePart,
    TextPart,
    Turn,
)

TEXTS = [
    "The cat sat on the mat.\n\nIt looks  out of the window:\tthe street, a bird!",
    "\U0001f408 caf\u00e9 \u2014 na\u00efve \u2713 \u6771\u4eac\n  indented line\n\n\nlast words ",
    "a\nb\n\nc  d   e",
]


@pytest.fixture(scope="module")
def tokenizer(llama_loaded):
    return llama_loaded.processor.tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_decoder_keeps_every_space_and_newline(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids[:1])[0].startswith("\u2581")  # as the model writes a reply
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(token_id) for token_id in ids]
    assert "".join(deltas) + decoder.flush() == text
    assert all("\ufffd" not in delta for delta in deltas)
    assert sum(1 for delta in deltas if delta) >= len(text.split())  # released as it goes, not at the end


def test_words_streamed_one_piece_at_a_time_keep_their_spaces(tokenizer):
    decoder = IncrementalDecoder(tokenizer)
    pieces = ["\u2581The", "\u2581cat", "\u2581sat", ".", "<0x0A>", "\u2581\u2581", "It"]
    deltas = [decoder.push(tokenizer.convert_tokens_to_ids(piece)) for piece in pieces]
    assert deltas == ["The", " cat", " sat", ".", "\n", "  ", "It"]


@pytest.mark.parametrize("before_newline", [[], ["\u2581"]], ids=["\\n", "space \\n"])
def test_new_user_turn_written_as_sentencepiece_pieces_is_held_back_and_cut(tokenizer, before_newline):
    pieces = ["\u2581The", "\u2581cat", ".", *before_newline, "<0x0A>", "User", ":", "\u2581more"]
    eou = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    stopper = RowStopper(tokenizer, stop_token_ids=[eou], max_new_tokens=50)
    shown = ""
    for piece in pieces:
        shown += stopper.push(tokenizer.convert_tokens_to_ids(piece))
        assert not any(shown.endswith(NEW_USER_TURN[:n]) for n in range(1, len(NEW_USER_TURN) + 1))
        if stopper.finished:
            break
    assert stopper.finish_reason is FinishReason.STOP_STRING
    assert shown == stopper.reply == "The cat."


def test_text_that_only_starts_like_a_new_turn_is_released(tokenizer):
    stopper = RowStopper(tokenizer, stop_token_ids=[], max_new_tokens=50)
    ids = tokenizer("Done.\nUsually fine", add_special_tokens=False)["input_ids"]
    shown = "".join(stopper.push(token_id) for token_id in ids) + stopper.finish(FinishReason.LENGTH)
    assert shown == stopper.reply == "Done.\nUsually fine"


def _ask() -> Conversation:
    parts = (ImagePart(Image.new("RGB", (30, 30), (200, 40, 40))), TextPart("Say something"))
    return Conversation(turns=(Turn("user", parts),))


async def _stream(checkpoint) -> tuple[list[str], GenerationResult]:
    options = LoadOptions(model_id=str(checkpoint), dtype="float32", device_map=None)
    service = ModelService(load_model(options))
    await service.start()
    deltas, result = [], None
    try:
        async for event in service.stream(_ask(), GenerationParams(max_new_tokens=24)):
            if isinstance(event, GenerationResult):
                result = event
            else:
                deltas.append(event.text)
    finally:
        await service.stop()
    return deltas, result


async def test_the_service_streams_sentencepiece_replies_with_their_spaces(tmp_path, llama_tokenizer_file):
    chain = [":", "\u2581The", "\u2581cat", "\u2581sat", ".", "<0x0A>", "\u2581\u2581", "It"]
    chain.append("<end_of_utterance>")
    deltas, result = await _stream(make_chain_checkpoint(tmp_path / "spaces", chain, llama_tokenizer_file))
    assert result.finish_reason is FinishReason.END_OF_UTTERANCE
    assert result.text == "The cat sat.\n  It" == "".join(deltas)


async def test_the_service_stops_at_a_new_user_turn_in_sentencepiece_pieces(tmp_path, llama_tokenizer_file):
    chain = [":", "\u2581The", "\u2581cat", ".", "\u2581", "<0x0A>", "User", ":"]
    deltas, result = await _stream(make_chain_checkpoint(tmp_path / "user-turn", chain, llama_tokenizer_file))
    assert result.finish_reason is FinishReason.STOP_STRING
    assert result.text == "The cat." == "".join(deltas)
    assert all("\n" not in delta and "User" not in delta for delta in deltas)
