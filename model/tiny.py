"""Random IDEFICS checkpoints small enough for tests, offline demos and CPU benchmarks.

A tiny checkpoint has the real architecture (`IdeficsForVisionText2Text`), a real `IdeficsProcessor` and a
byte-level BPE tokenizer trained here on a few paragraphs of English, so it loads through exactly the same
code path (`model.loading.load_model`) as `HuggingFaceM4/idefics-9b-instruct`. Given a real tokenizer
(`tokenizer_path`: LLaMA's SentencePiece `tokenizer.model`, or a `tokenizer.json`), it uses that instead:
the real vocabulary (32000 pieces, the IDEFICS tokens at 32000-32002), written in the hub's layout, so
tests see what the bot does with the real checkpoint's tokenization. Its answers are nonsense,
but they are deterministic and they depend on the image: the cross-attention gates start at one instead of
zero and the weights are drawn with a large `initializer_range`, so different images give different
greedy outputs.

Sizes:
- ``"tiny"``: hidden and vision dims 64 (the smallest that bitsandbytes 4-bit accepts on CPU); loads in
  well under a second.
- ``"small"``: about 30 million parameters, for CPU benchmarks that mean something.
- ``"proportional"``: "small"'s text width with idefics-9b's image path in proportion: 64 perceiver
  latents per image and a gated cross-attention layer every 4 text layers (8 layers, so 2 of them), the
  vision width about 0.31 of the text width (idefics-9b: 1280 / 4096). What `generate` recomputes for one
  image at every decode step (perceiver plus the cross-attention image keys/values) costs about 3 times
  one token's text work here, as in idefics-9b (about 2.4 times), so image benchmarks mean something;
  "small" has 4 latents and makes image work nearly free.

``eou_bias`` makes a checkpoint that ends its replies quickly, for end-of-utterance stop tests. The
architecture has no bias on ``lm_head``, so the bias is built into the weights: residual channel 0 holds a
constant written by the token embeddings (no layer writes to it, their output rows for channel 0 are
zeroed), and ``lm_head``'s ``<end_of_utterance>`` row reads that channel with weight ``eou_bias``. Tokens
containing ``":"`` (the prompt always ends with ``"\\nAssistant:"``) write zero to the channel instead, so
the model still writes at least one token of its own before it says ``<end_of_utterance>``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    IdeficsConfig,
    IdeficsForVisionText2Text,
    IdeficsImageProcessor,
    IdeficsProcessor,
    LlamaTokenizer,
    PreTrainedTokenizerFast,
)

from model.loaded import END_OF_UTTERANCE, FAKE_IMAGE_TOKEN, IMAGE_TOKEN
from model.tokenization import SERVED_FORMAT_OPTIONS

Size = Literal["tiny", "small", "proportional"]

TOKENIZER_VOCAB_SIZE = 512
IMAGE_SIZE = 30
BASE_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
# Added after the trained vocabulary, as in the real tokenizer (ids 32000-32002 there).
IDEFICS_SPECIAL_TOKENS = (FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE)

_TRAINING_TEXT = """\
User: What is in this picture?
Assistant: A red circle on a white background.
User: What colour is the square?
Assistant: The square is blue. It sits in the middle of the picture.
User: Can you describe the image in one sentence?
Assistant: A green triangle and a yellow star on a dark blue sky.
User: How many shapes are there?
Assistant: There are three shapes: a circle, a square and a triangle.
User: Tell me a short story about this photo.
Assistant: Once upon a time, a small orange cat lived in a quiet house by the sea.
Every morning the cat watched the boats, and every evening it slept in the sun.
User: Is there a person in the image?
Assistant: No, I cannot see any person. I see a tree, a house and the sky.
User: Thank you!
Assistant: You are welcome. I am happy to help with your images.
The quick brown fox jumps over the lazy dog. The dog is brown and the fox is red.
A picture shows a large black and white striped shape next to a small pink dot.
I am a polite and truthful assistant. I describe what I see and say when I am not sure.
This is a photo of a street with cars, people, shops and a bright morning light.
There is a cup of coffee on a wooden table near the window, and it is raining outside.
"""


def make_tiny_checkpoint(
    directory: Path,
    size: Size = "tiny",
    seed: int = 0,
    eou_bias: float | None = None,
    chatty_word: str | None = None,
    tokenizer_path: Path | None = None,
) -> Path:
    """Write a random IDEFICS checkpoint, its processor and tokenizer to `directory`; return it.

    `eou_bias` (e.g. 30.0) adds roughly that much to the `<end_of_utterance>` logit after every token
    but the prompt's final ":", so greedy replies stop after a token or two (see the module docstring).
    `chatty_word` (one token of the tokenizer, e.g. " the") is favoured the same way instead, so greedy
    replies repeat it until `max_new_tokens`: long answers on demand.
    `tokenizer_path` (a `tokenizer.model` or `tokenizer.json`) replaces the trained BPE tokenizer.
    """
    tokenizer = build_tokenizer() if tokenizer_path is None else load_real_tokenizer(Path(tokenizer_path))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = IdeficsForVisionText2Text(tiny_config(tokenizer, size)).eval()
    if eou_bias is not None:
        _build_constant_channel(model, tokenizer)
        _favour_token(model, tokenizer, END_OF_UTTERANCE, eou_bias)
    elif chatty_word is not None:
        _build_constant_channel(model, tokenizer)
        _favour_token(model, tokenizer, chatty_word, CHATTY_BIAS)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    processor = IdeficsProcessor(
        image_processor=IdeficsImageProcessor(image_size=IMAGE_SIZE), tokenizer=tokenizer
    )
    processor.save_pretrained(directory)
    if tokenizer_path is not None:
        _complete_hub_layout(directory, Path(tokenizer_path), tokenizer)
    return directory


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `_TRAINING_TEXT`: "User", "Assistant", ":" and "\\n" are single tokens."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=list(BASE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TRAINING_TEXT.splitlines(keepends=True) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=list(IDEFICS_SPECIAL_TOKENS),
        model_max_length=2048,
    )


def load_real_tokenizer(path: Path) -> LlamaTokenizer:
    """idefics's tokenizer from LLaMA's `tokenizer.model` or a `tokenizer.json`, plus the IDEFICS tokens.

    LLaMA has no padding piece; idefics pads with `<unk>`.
    """
    hub_name = {".model": "tokenizer.model", ".json": "tokenizer.json"}.get(path.suffix)
    if hub_name is None or not path.is_file():
        raise ValueError(f"{str(path)!r} is not a SentencePiece .model file or a tokenizer.json file")
    if hub_name == "tokenizer.model":
        _check_sentencepiece_model(path)
    with tempfile.TemporaryDirectory() as staging:  # a folder of its own: nothing else in it is read
        shutil.copyfile(path, Path(staging) / hub_name)
        try:
            tokenizer = LlamaTokenizer.from_pretrained(
                staging, local_files_only=True, pad_token="<unk>", **SERVED_FORMAT_OPTIONS
            )
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ValueError(f"{str(path)!r} could not be read as a tokenizer: {error}") from error
    tokenizer.add_special_tokens({"additional_special_tokens": list(IDEFICS_SPECIAL_TOKENS)})
    for bookkeeping in ("name_or_path", "is_local", "local_files_only", "vocab_file", "legacy"):
        tokenizer.init_kwargs.pop(bookkeeping, None)  # from_pretrained's, not the checkpoint's
    ids = tokenizer.convert_tokens_to_ids(list(IDEFICS_SPECIAL_TOKENS))
    if ids != list(range(len(tokenizer) - len(ids), len(tokenizer))):
        raise ValueError(f"the IDEFICS tokens must be the last ids of the vocabulary, not {ids}")
    return tokenizer


def _check_sentencepiece_model(path: Path) -> None:
    """transformers would read a broken .model as tiktoken and say so, misleadingly: check it first."""
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{str(path)!r} is not a SentencePiece model ({error})") from error


def _complete_hub_layout(directory: Path, source: Path, tokenizer: LlamaTokenizer) -> None:
    """Add what `hf download` of idefics has beside tokenizer.json and tokenizer_config.json."""
    if source.suffix == ".model":
        shutil.copyfile(source, directory / "tokenizer.model")
    special_tokens = {
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "unk_token": tokenizer.unk_token,
        "pad_token": tokenizer.pad_token,
        "additional_special_tokens": list(IDEFICS_SPECIAL_TOKENS),
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special_tokens, indent=2) + "\n")


def tiny_config(tokenizer: PreTrainedTokenizerFast, size: Size) -> IdeficsConfig:
    """The model configuration for `size`; the three IDEFICS tokens are the "additional" vocabulary."""
    dims = _SIZES[size]
    additional = len(IDEFICS_SPECIAL_TOKENS)
    return IdeficsConfig(
        vocab_size=len(tokenizer) - additional,
        additional_vocab_size=additional,
        hidden_size=dims["hidden"],
        intermediate_size=dims["hidden"] * 2,
        num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"],
        max_position_embeddings=2048,
        initializer_range=dims["init"],
        alpha_initializer="ones",
        use_resampler=True,
        freeze_text_layers=False,
        freeze_vision_layers=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vision_config=dict(
            embed_dim=dims["vision"],
            image_size=IMAGE_SIZE,
            patch_size=3,
            num_hidden_layers=2,
            num_attention_heads=dims.get("vision_heads", 2),
            intermediate_size=dims["vision"] * 2,
            initializer_range=dims["init"],
        ),
        cross_layer_interval=dims.get("cross_every", 1),
        perceiver_config=dict(
            use_resampler=True,
            resampler_n_latents=dims.get("latents", 4),
            resampler_depth=dims.get("perceiver_depth", 1),
            resampler_n_heads=dims.get("perceiver_heads", 2),
            resampler_head_dim=dims.get("perceiver_head_dim", 32),  # bitsandbytes on CPU needs >= 64 in
        ),
    )


_SIZES = {
    "tiny": dict(hidden=64, layers=2, heads=2, vision=64, init=0.3),
    "small": dict(hidden=512, layers=6, heads=8, vision=128, init=0.1),
    # idefics-9b: 64 latents, cross-attention every 4 of 32 layers, vision 1280 wide for text 4096, a
    # perceiver 1.2 times as wide inside (16 heads x 96) as the vision width. Depth 2, not 6, keeps one
    # image's per-step recomputation in the same proportion to a token's text work (8 layers, not 32).
    "proportional": dict(
        hidden=512, layers=8, heads=8, vision=160, vision_heads=4, init=0.1, cross_every=4,
        latents=64, perceiver_depth=2, perceiver_heads=4, perceiver_head_dim=48,
    ),  # fmt: skip
}


CHATTY_BIAS = 30.0
TOKENIZER_HELP = (
    "use this real tokenizer (LLaMA's SentencePiece tokenizer.model, or a tokenizer.json) instead of a "
    "small trained one"
)


@torch.no_grad()
def _build_constant_channel(model: IdeficsForVisionText2Text, tokenizer) -> None:
    """Give the residual stream a constant channel 0 (zero after tokens holding ":") for lm_head to read."""
    for name, parameter in model.model.layers.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            parameter[0, :] = 0.0
    for name, parameter in model.model.gated_cross_attn_layers.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            parameter[0, :] = 0.0
    embeddings = model.model.embed_tokens
    embeddings.weight[:, 0] = 1.0
    embeddings.additional_embedding.weight[:, 0] = 1.0
    for token, token_id in tokenizer.get_vocab().items():
        if ":" in tokenizer.convert_tokens_to_string([token]) and token_id < embeddings.weight.shape[0]:
            embeddings.weight[token_id, 0] = 0.0


@torch.no_grad()
def _favour_token(model: IdeficsForVisionText2Text, tokenizer, text: str, bias: float) -> None:
    """Make the lm_head row of the single token `text` read channel 0 with weight `bias`."""
    weight = model.lm_head.weight
    row = single_token_id(tokenizer, text)
    if row >= model.config.vocab_size:  # the IDEFICS tokens live in lm_head's additional rows
        weight, row = model.lm_head.additional_fc.weight, row - model.config.vocab_size
    weight[row, :] = 0.0
    weight[row, 0] = bias / _constant_channel_readout(model, tokenizer)


def single_token_id(tokenizer, text: str) -> int:
    """The id of the one token that writes `text` (" the": "Ġthe" for byte-level BPE, "▁the" for LLaMA)."""
    token_ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(token_ids) != 1 and text.startswith(" "):
        # SentencePiece writes a word's leading space itself, as its dummy prefix "▁".
        token_ids = tokenizer(text[1:], add_special_tokens=False).input_ids
    if len(token_ids) != 1:
        raise ValueError(f"{text!r} is {len(token_ids)} tokens for this tokenizer; pick a single token")
    return token_ids[0]


@torch.no_grad()
def _constant_channel_readout(model: IdeficsForVisionText2Text, tokenizer) -> float:
    """What channel 0 reads after the final norm on typical text (it shrinks as the residual grows)."""
    ids = tokenizer(_TRAINING_TEXT[:400], return_tensors="pt").input_ids
    no_image = dict(
        pixel_values=torch.zeros(1, 1, 3, IMAGE_SIZE, IMAGE_SIZE),
        image_attention_mask=torch.zeros(1, ids.shape[1], 1, dtype=torch.long),
    )
    hidden = model.model(input_ids=ids, **no_image).last_hidden_state[0, :, 0]
    return float(hidden[hidden > 0].median())


def main(argv: list[str] | None = None) -> None:
    """`python -m model.tiny DIR [--size tiny|small]`; the bot's CLI offers the same as make-tiny-model."""
    import argparse

    parser = argparse.ArgumentParser(description="Write a random IDEFICS checkpoint for tests and demos.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", choices=sorted(_SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eou-bias", type=float, default=None, help="make replies end after a token")
    parser.add_argument("--tokenizer", type=Path, default=None, help=TOKENIZER_HELP)
    args = parser.parse_args(argv)
    path = make_tiny_checkpoint(
        args.directory, size=args.size, seed=args.seed, eou_bias=args.eou_bias, tokenizer_path=args.tokenizer
    )
    print(f"Wrote a {args.size} random IDEFICS checkpoint to {path}; set MODEL_ID={path} to use it.")


if __name__ == "__main__":
    main()
