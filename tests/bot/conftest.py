"""Fixtures for the bot's end-to-end tests: the Bot API stand-in, settings pointing at it, and the real
Application (from `build_application`) run the way `run_polling` runs it, but inside the test's loop.

huggingface_hub reads HF_HUB_OFFLINE once, when first imported (the imports below bring it), and this
conftest is imported before tests/conftest.py's pytest_configure when its folder is named on the
command line: hence the line before the imports, as in tests/tgi/conftest.py.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import asyncio  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from contextlib import AsyncExitStack  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from PIL import Image  # noqa: E402
from telegram.ext import Application  # noqa: E402

from bot.app import build_application  # noqa: E402
from bot.lifecycle import create_model_backend, serving  # noqa: E402
from bot.runtime import BotRuntime, runtime_of  # noqa: E402
from bot.settings import Settings  # noqa: E402
from model.service import ModelService  # noqa: E402
from model.types import Conversation, GenerationParams  # noqa: E402
from standin.telegram.server import BotApiStandIn  # noqa: E402
from tests.databases import database_kinds, empty_database  # noqa: E402
from tests.standin import fixtures as standin_fixtures  # noqa: E402

bot_api = standin_fixtures.bot_api  # the stand-in fixture, for every test in this package


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_databases` run on SQLite and on PostgreSQL (tests/databases.py); the rest on
    SQLite, which keeps the suite's time in check."""
    if metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", database_kinds(), indirect=True)


@pytest_asyncio.fixture
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with empty_database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture
def make_settings(
    bot_api: BotApiStandIn, database_url: str, tiny_checkpoint: Path
) -> Callable[..., Settings]:
    """Settings for a bot talking to the stand-in, with the tiny checkpoint and a fresh SQLite file."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            telegram_bot_token=bot_api.token,
            telegram_api_url=bot_api.api_root,
            database_url=database_url,
            model_id=str(tiny_checkpoint),
            model_dtype="float32",
            max_new_tokens=8,
            stream_edit_interval_s=0.6,  # drafts stay inside the stand-in's flood limits
            conversation_retention_days=0,
        )
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest_asyncio.fixture
async def start_bot(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Callable[..., Any]]:
    """`await start_bot(**settings_overrides, model_service_factory=...)` → a running Application.

    Every bot started is stopped at the end of the test; `start_bot.stop(app)` stops one earlier (a
    restart). Each test also proves nothing went wrong unseen: no ERROR log from the bot or PTB.
    """
    caplog.set_level(logging.INFO)
    stacks: dict[int, AsyncExitStack] = {}

    async def start(*, model_service_factory: Callable | None = None, **overrides: Any) -> Application:
        application = build_application(
            make_settings(**overrides), model_service_factory=model_service_factory
        )
        stack = AsyncExitStack()
        await stack.enter_async_context(serving(application, poll_interval=0, timeout=1))
        stacks[id(application)] = stack
        return application

    async def stop(application: Application) -> None:
        await stacks.pop(id(application)).aclose()

    expected_error_loggers: set[str] = set()
    start.stop = stop  # type: ignore[attr-defined]
    start.expect_errors_from = expected_error_loggers.add  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for stack in reversed(list(stacks.values())):
            await stack.aclose()
    logged = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    errors = [
        r
        for r in logged
        if r.levelno >= logging.ERROR
        and r.name.split(".")[0] in ("bot", "telegram")
        and r.name not in expected_error_loggers
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


def runtime(application: Application) -> BotRuntime:
    return runtime_of(application)


async def answers_settled(application: Application, timeout: float = 30) -> None:
    """Wait until no answer is running or queued (each one records its turn before it ends)."""
    async with asyncio.timeout(timeout):
        while runtime(application).answers.pending_count():
            await asyncio.sleep(0.02)


class RecordingModelService(ModelService):
    """The real service, recording every conversation it was asked to answer (and optionally slowed
    down between stream events, so a test can act while an answer is being written)."""

    def __init__(self, *args: Any, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.conversations: list[Conversation] = []

    async def stream(self, conversation: Conversation, params: GenerationParams):
        self.conversations.append(conversation)
        events = super().stream(conversation, params)
        try:
            async for event in events:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield event
        finally:
            await events.aclose()


def recording_factory(
    delay_s: float = 0.0, service_class: type[RecordingModelService] | None = None
) -> tuple[Callable, list[Any]]:
    """A model_service_factory that builds RecordingModelServices (or `service_class`, a subclass)
    over the real tiny checkpoint."""
    made: list[RecordingModelService] = []

    async def factory(settings: Settings) -> RecordingModelService:
        plain = await create_model_backend(settings)
        service = (service_class or RecordingModelService)(
            plain.loaded,
            max_batch_size=settings.max_batch_size,
            max_images=settings.max_images_in_prompt,
            delay_s=delay_s,
        )
        made.append(service)
        return service

    return factory, made


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (until someone takes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def image_bytes(color: str, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


async def eventually(probe: Callable[[], Any], timeout: float = 30, every_s: float = 0.05) -> Any:
    """Poll the coroutine function `probe` until it returns something truthy; that value."""
    async with asyncio.timeout(timeout):
        while not (value := await probe()):
            await asyncio.sleep(every_s)
    return value
