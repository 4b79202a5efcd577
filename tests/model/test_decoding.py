"""The hand-written decode loop gives `generate`'s tokens, and rows can join and leave between steps.

Rows are prefilled one by one (model/prefill.py) and joined; the loop computes each row's image
keys/values once, where `generate` recomputes them at every step."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from model.batch import collate, image_dims, prepare_prompt
from model.decoding import RunningBatch, concatenate, filter_rows, new_row, step
from model.image_features import image_latents_for
from model.prefill import advance, finish_prefill, start_prefill
from model.generation import pad_token_id, stop_token_ids
from model.loaded import LoadOptions
from model.loading import load_model
from model.stopping import RowStopper
from model.types import GenerationParams


class Sink:
    """Records what the loop routes to a request."""

    cancelled = False

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.finished: RowStopper | None = None

    def on_token(self) -> None:
        pass

    def on_delta(self, text: str) -> None:
        self.deltas.append(text)

    def on_finished(self, stopper: RowStopper) -> None:
        assert self.finished is None, "a row is finished once"
        self.finished = stopper


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(LoadOptions(model_id=str(tiny_checkpoint), dtype="float32", device_map=None))


def _colour(rgb, size=(40, 32)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def _prompts(loaded):
    """Three prompts of different lengths: three images, no image, one image."""
    processor = loaded.processor
    red, blue, green = _colour((255, 0, 0)), _colour((0, 0, 255), (64, 20)), _colour((0, 255, 0))
    items = [
        "User:", red, "what is this?<end_of_utterance>", "\nAssistant: A red thing.<end_of_utterance>",
        "\nUser:", blue, red, "and these two?<end_of_utterance>", "\nAssistant:",
    ]  # fmt: skip
    long_ids = processor(text=items, return_tensors="pt")["input_ids"][0].tolist()
    text_ids = processor.tokenizer("<s>User: no image here<end_of_utterance>\nAssistant:")["input_ids"]
    short = processor(text=["User:", green, "hi<end_of_utterance>\nAssistant:"], return_tensors="pt")
    return [
        prepare_prompt(loaded, long_ids, [red, blue, red]),
        prepare_prompt(loaded, text_ids, []),
        prepare_prompt(loaded, short["input_ids"][0].tolist(), [green]),
    ]


def _collate(loaded, prompts):
    return collate(
        prompts,
        pad_token_id=pad_token_id(loaded),
        image_token_id=loaded.image_token_ids[0],
        image_dims=image_dims(loaded),
    )


def _generate(loaded, prompts, max_new_tokens: int) -> list[list[int]]:
    """What `generate` writes, with the service's rules: banned image tokens, stop tokens forbidden."""
    batch = _collate(loaded, prompts)
    with torch.inference_mode():
        out = loaded.model.generate(
            **batch.model_inputs(loaded.device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            bad_words_ids=[[token] for token in loaded.image_token_ids],
            eos_token_id=list(stop_token_ids(loaded)),
            pad_token_id=pad_token_id(loaded),
        )
    return out[:, batch.input_ids.shape[1] :].tolist()


def _start(loaded, prompts, max_new_tokens) -> RunningBatch:
    """Each prompt prefilled alone, then all joined (left-padded) into one running batch."""
    counts = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts)
    batch = None
    for prompt, count in zip(prompts, counts, strict=True):
        params = GenerationParams(max_new_tokens=count, ignore_stop=True)
        row = new_row(loaded, params, Sink(), prompt.input_ids)
        latents = image_latents_for(loaded, prompt, [None] * prompt.num_images, None)
        job = start_prefill(loaded, row, prompt, latents, None)
        advance(loaded.model, job, None)
        one, _events = finish_prefill(job)
        batch = one if batch is None else concatenate(batch, one)
    return batch


def _drop_finished(batch: RunningBatch | None) -> RunningBatch | None:
    if batch is None:
        return None
    return filter_rows(batch, [i for i, row in enumerate(batch.rows) if not row.finished])


def _run_to_end(loaded, batch: RunningBatch | None) -> None:
    while (batch := _drop_finished(batch)) is not None:
        step(loaded.model, batch)


def test_the_loop_gives_generates_greedy_tokens_alone_and_in_a_padded_batch(loaded) -> None:
    prompts = _prompts(loaded)
    for group in ([prompts[0]], prompts):
        batch = _start(loaded, group, 12)
        rows = list(batch.rows)
        _run_to_end(loaded, batch)
        assert [row.generated for row in rows] == _generate(loaded, group, 12)
        assert all(row.output.stopper.completion_tokens == 12 for row in rows)
    assert len({tuple(row.generated) for row in rows}) == 3  # the prompts really lead to different tokens


def test_rows_that_join_mid_way_and_rows_that_leave_keep_their_own_tokens(loaded) -> None:
    prompts = _prompts(loaded)
    alone = [_generate(loaded, [p], 16)[0] for p in prompts]
    running = _start(loaded, [prompts[1]], 16)
    first = running.rows[0]
    for _ in range(5):
        step(loaded.model, running)
    newcomers = _start(loaded, [prompts[0], prompts[2]], [16, 3])
    joined = concatenate(running, newcomers)
    assert len(joined) == 3 and joined.image_mask.shape[-1] == 3  # the image axis grew to the widest row
    rows = list(joined.rows)
    lengths = []
    while (joined := _drop_finished(joined)) is not None:
        lengths.append(len(joined))
        step(loaded.model, joined)
    assert 3 in lengths and 2 in lengths  # the 3-token row left early and the batch shrank
    assert first.generated == alone[1]
    assert rows[1].generated == alone[0]
    assert rows[2].generated == alone[2][:3]


def test_leaving_rows_take_their_left_padding_with_them(loaded) -> None:
    prompts = _prompts(loaded)
    batch = _start(loaded, [prompts[0], prompts[1]], [2, 6])
    longest = batch.cached_length
    step(loaded.model, batch)
    batch = _drop_finished(batch)
    assert len(batch) == 1
    assert batch.cached_length == len(prompts[1].input_ids) + 1 < longest + 1
    assert batch.attention_mask.all()
    assert all(layer.keys.shape[-2] == batch.cached_length for layer in batch.cache.layers)
    _run_to_end(loaded, batch)
    assert batch.rows[0].generated == _generate(loaded, [prompts[1]], 6)[0]
