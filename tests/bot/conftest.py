"""Fixtures for the bot's end-to-end tests: the Bot API stand-in, settings pointing at it, and the real
Application (from `build_application`) run the way `run_polling` runs it, but inside the test's loop."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image
from telegram.ext import Application

from bot.app import build_application
from bot.lifecycle import load_model_service, serving
from bot.runtime import BotRuntime, runtime_of
from bot.settings import Settings
from model.service import ModelService
from model.types import Conversation, GenerationParams
from tests.standin import fixtures as standin_fixtures
from standin.telegram.server import BotApiStandIn

bot_api = standin_fixtures.bot_api  # the stand-in fixture, for every test in this package


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}"


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
        plain = await load_model_service(settings)
        service = (service_class or RecordingModelService)(
            plain.loaded,
            max_batch_size=settings.max_batch_size,
            max_images=settings.max_images_in_prompt,
            delay_s=delay_s,
        )
        made.append(service)
        return service

    return factory, made


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
