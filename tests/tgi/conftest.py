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


@pytest.fixture
async def start_tgi() -> AsyncIterator[Callable[..., TgiStandIn]]:
    """`await start_tgi(loaded, limits=...)`: a started stand-in, stopped after the test."""
    started: list[TgiStandIn] = []

    async def start(loaded: LoadedModel, **options) -> TgiStandIn:
        server = TgiStandIn(loaded, **options)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def tgi(start_tgi, tiny_loaded) -> TgiStandIn:
    return await start_tgi(tiny_loaded)


@pytest.fixture
async def start_backend() -> AsyncIterator[Callable[..., TgiBackend]]:
    """`await start_backend(loaded, [url, ...], **options)`: a started TgiBackend, stopped after the test."""
    started: list[TgiBackend] = []

    async def start(loaded: LoadedModel, urls, **options) -> TgiBackend:
        options = {"retry": FAST_RETRY, "health_interval_s": 0.1, **options}
        backend = TgiBackend(loaded.processor, loaded.max_positions, list(urls), **options)
        await backend.start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.stop()
