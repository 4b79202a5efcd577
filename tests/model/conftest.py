"""Fixtures for the model tests that need idefics's real tokenizer (LLaMA SentencePiece, 32000 + 3 tokens).

The tokenizer file is a fixture of the repository (tests/fixtures/llama-tokenizer/, with its source and
license), so the suite stays self-contained. The checkpoint built on it is made once per session, in the
hub's layout, and always loaded through `model.loading.load_model`, like the real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LLAMA_TOKENIZER = Path(__file__).parents[1] / "fixtures" / "llama-tokenizer" / "tokenizer.model"


@pytest.fixture(scope="session")
def llama_tokenizer_file() -> Path:
    return LLAMA_TOKENIZER


@pytest.fixture(scope="session")
def sentencepiece_model(llama_tokenizer_file):
    """The SentencePiece library itself on the same file: the independent reference for served ids."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(llama_tokenizer_file))


@pytest.fixture(scope="session")
def llama_checkpoint(tmp_path_factory, llama_tokenizer_file) -> Path:
    """A tiny random IDEFICS checkpoint with the real tokenizer, written by make-tiny-model --tokenizer."""
    from model.tiny import make_tiny_checkpoint

    directory = tmp_path_factory.mktemp("tiny-idefics-llama")
    return make_tiny_checkpoint(directory, tokenizer_path=llama_tokenizer_file)


@pytest.fixture(scope="session")
def llama_loaded(llama_checkpoint):
    from model.loaded import LoadOptions
    from model.loading import load_model

    return load_model(LoadOptions(model_id=str(llama_checkpoint), dtype="float32", device_map=None))
