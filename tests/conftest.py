"""Fixtures shared by every test package: the tiny IDEFICS checkpoints, made once per session.

Tests never reach the Hugging Face hub. huggingface_hub reads HF_HUB_OFFLINE once, when it is first
imported, so it is set in `pytest_configure` (before any test module imports transformers) and the
checkpoint maker is imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 64-dim IDEFICS checkpoint (model, processor, tokenizer) in a session temp directory."""
    from model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-idefics"))


@pytest.fixture(scope="session")
def tiny_checkpoint_eou(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_checkpoint`, but greedy replies end with <end_of_utterance> after one token."""
    from model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-idefics-eou"), eou_bias=30.0)


@pytest.fixture(scope="session")
def tiny_checkpoint_chatty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_checkpoint`, but greedy replies repeat " the" until max_new_tokens: long answers."""
    from model.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-idefics-chatty"), chatty_word=" the")


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A recording `gs` first on PATH, and Pillow made to look for Ghostscript afresh."""
    from PIL import EpsImagePlugin

    from tests.untrusted_files import install_fake_ghostscript

    fake = install_fake_ghostscript(tmp_path / "fake-bin")
    monkeypatch.setenv("PATH", f"{fake.folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return fake
