"""The `bot_api` pytest fixture: a started BotApiStandIn, stopped after the test.

Enable it in a conftest.py with `from tests.standin.fixtures import bot_api  # noqa: F401`
(or `pytest_plugins = ["tests.standin.fixtures"]` in the top-level conftest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from standin.telegram.server import BotApiStandIn


@pytest_asyncio.fixture
async def bot_api() -> AsyncIterator[BotApiStandIn]:
    """A Bot API stand-in listening on 127.0.0.1, realistic flood limits on."""
    server = BotApiStandIn()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.internal_errors, "the stand-in itself failed:\n" + "\n".join(
        server.internal_errors)
