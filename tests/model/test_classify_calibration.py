"""/classify scores a label as the model writing exactly it and then ending its turn, with the real tokenizer.

So a short label is not favoured just for being short: "cat" is also the start of "cat and a dog", and
only `<end_of_utterance>` after it says whether the model would stop there.
"""

from __future__ import annotations

import pytest
from chain_checkpoint import make_chain_checkpoint
from PIL import Image
from served_rule import EOU, served_ids

from model.loaded import LoadOptions
from model.loading import load_model
from model.scoring import continuation_ids
from model.service import ModelService
from model.types import Conversation, ImagePart, TextPart, Turn

LABELS = ["cat", "cat and a dog", "dog"]


@pytest.mark.parametrize("label", ["dog", "hot dog", "Golden retriever", "caf\u00e9 au lait", "T-shirt (XL)"])
def test_label_ids_are_what_the_model_writes_after_assistant(llama_loaded, sentencepiece_model, label):
    tokenizer, eou = llama_loaded.processor.tokenizer, llama_loaded.end_of_utterance_id
    ids = continuation_ids(tokenizer, label, eou)
    # The reply continues the segment that starts after the user's <end_of_utterance>.
    prompt_end = served_ids(sentencepiece_model, f"{EOU}\nAssistant:")
    whole_turn = served_ids(sentencepiece_model, f"{EOU}\nAssistant: {label}{EOU}")
    assert whole_turn[: len(prompt_end)] == prompt_end
    assert ids == whole_turn[len(prompt_end) :]
    assert tokenizer.convert_ids_to_tokens(ids[:1])[0].startswith("\u2581")  # the label's space is its "▁"
    assert ids[-1] == eou == 32002


def test_label_text_that_looks_special_stays_literal(llama_loaded):
    tokenizer, eou = llama_loaded.processor.tokenizer, llama_loaded.end_of_utterance_id
    ids = continuation_ids(tokenizer, "a <image> or <end_of_utterance>", eou)
    assert not set(ids[:-1]) & {32000, 32001, 32002, 1, 2}
    assert tokenizer.decode(ids[:-1]) == "a <image> or <end_of_utterance>"


async def _scores(checkpoint, labels):
    options = LoadOptions(model_id=str(checkpoint), dtype="float32", device_map=None)
    service = ModelService(load_model(options))
    await service.start()
    try:
        image = ImagePart(Image.new("RGB", (30, 30), (120, 80, 40)))
        question = Conversation((Turn("user", (image, TextPart("Which fits best: " + ", ".join(labels)))),))
        return await service.score_options_detailed(question, labels)
    finally:
        await service.stop()


async def test_a_short_label_that_is_only_the_start_of_the_reply_loses(tmp_path, llama_tokenizer_file):
    # After the prompt's final ":" this model writes " cat and a dog" and then ends its turn.
    chain = [":", "\u2581cat", "\u2581and", "\u2581a", "\u2581dog", "<end_of_utterance>"]
    scores = await _scores(make_chain_checkpoint(tmp_path / "long", chain, llama_tokenizer_file), LABELS)
    by_label = {score.option: score for score in scores}
    assert by_label["cat"].tokens == 2 and by_label["cat and a dog"].tokens == 5  # label tokens + EOU
    # Without the end-of-utterance term both would score about 0 (the model writes both prefixes surely).
    assert by_label["cat and a dog"].log_prob > -1.0
    assert by_label["cat"].log_prob < by_label["cat and a dog"].log_prob - 10.0
    assert max(scores, key=lambda score: score.log_prob).option == "cat and a dog"


async def test_a_short_label_the_model_ends_after_wins(tmp_path, llama_tokenizer_file):
    chain = [":", "\u2581cat", "<end_of_utterance>"]
    scores = await _scores(make_chain_checkpoint(tmp_path / "short", chain, llama_tokenizer_file), LABELS)
    by_label = {score.option: score.log_prob for score in scores}
    assert by_label["cat"] > -1.0 and by_label["cat"] > by_label["cat and a dog"] + 10.0
