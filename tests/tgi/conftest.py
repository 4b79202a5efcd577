"""Fixtures for the TGI backend and its stand-in: tiny checkpoints loaded once, stand-ins per test.

A stand-in costs milliseconds to start (the model is loaded once per session and shared), so every
test gets fresh servers with fresh faults and counters; backends get short health intervals and
short retry waits so that failure tests stay quick.

huggingface_hub reads HF_HUB_OFFLINE once, when first imported, and this conftest is imported before
tests/conftest.py's pytest_configure when its folder is named on the command line: hence the line
before the imports.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from collections.abc import AsyncIterator, Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from model.loaded import LoadedModel  # noqa: E402
from model.tgi import TgiBackend  # noqa: E402
from standin.tgi import TgiStandIn  # noqa: E402
from tgi_helpers import FAST_RETRY, load  # noqa: E402


@pytest.fixture(scope="session")
def tiny_loaded(tiny_checkpoint) -> LoadedModel:
    return load(tiny_checkpoint)


@pytest.fixture(scope="session")
def chatty_loaded(tiny_checkpoint_chatty) -> LoadedModel:
    return load(tiny_checkpoint_chatty)


@pytest.fixture(scope="session")
def llama_loaded(tmp_path_factory) -> LoadedModel:
    """A tiny checkpoint with idefics's real LLaMA SentencePiece tokenizer (the repository's fixture)."""
    from model.tiny import make_tiny_checkpoint

    tokenizer = Path(__file__).parents[1] / "fixtures" / "llama-tokenizer" / "tokenizer.model"
    return load(make_tiny_checkpoint(tmp_path_factory.mktemp("tgi-llama"), tokenizer_path=tokenizer))


@pytest.fixture
async def stop_at_teardown() -> AsyncIterator[Callable[[object], None]]:
    """Register started stand-ins and backends; they are stopped, newest first, when the test ends."""
    running: list = []
    yield running.append
    for started in reversed(running):
        await started.stop()


@pytest.fixture
def start_tgi(stop_at_teardown) -> Callable[..., TgiStandIn]:
    """`await start_tgi(loaded, limits=...)`: a started stand-in, stopped after the test."""

    async def start(loaded: LoadedModel, **options) -> TgiStandIn:
        server = TgiStandIn(loaded, **options)
        await server.start()
        stop_at_teardown(server)
        return server

    return start


@pytest.fixture
async def tgi(start_tgi, tiny_loaded) -> TgiStandIn:
    return await start_tgi(tiny_loaded)


@pytest.fixture
def start_backend(stop_at_teardown) -> Callable[..., TgiBackend]:
    """`await start_backend(loaded, [url, ...], **options)`: a started TgiBackend, stopped after the test."""

    async def start(loaded: LoadedModel, urls, **options) -> TgiBackend:
        options = {"retry": FAST_RETRY, "health_interval_s": 0.1, **options}
        backend = TgiBackend(loaded.processor, loaded.max_positions, list(urls), **options)
        await backend.start()
        stop_at_teardown(backend)
        return backend

    return start
