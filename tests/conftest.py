"""Fixtures shared by every test package: the tiny IDEFICS checkpoints, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.tiny import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 64-dim IDEFICS checkpoint (model, processor, tokenizer) in a session temp directory."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-idefics"))


@pytest.fixture(scope="session")
def tiny_checkpoint_eou(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_checkpoint`, but greedy replies end with <end_of_utterance> after a token or so."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-idefics-eou"), eou_bias=30.0)
