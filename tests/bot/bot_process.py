"""`idefics-bot run` as a real separate process against the stand-in: ask it one photo question, then
stop it with SIGTERM the way a service manager does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.bot.conftest import image_bytes
from standin.telegram.server import BotApiStandIn
from standin.telegram.state import BotMessage

REPO_ROOT = Path(__file__).parents[2]


@dataclass(frozen=True)
class ProcessRun:
    answer: BotMessage
    returncode: int
    log: str


def bot_environment(
    bot_api: BotApiStandIn, database_url: str, model_id: Path, **extra: str
) -> dict[str, str]:
    """The process environment for a bot on the stand-in; nothing inherited can point it elsewhere."""
    ours = ("TELEGRAM_", "DATABASE_", "MODEL_", "TGI_", "WEBHOOK_", "METRICS_")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {
        **inherited,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TELEGRAM_BOT_TOKEN": bot_api.token,
        "TELEGRAM_API_URL": bot_api.api_root,
        "DATABASE_URL": database_url,
        "MODEL_ID": str(model_id),
        "MAX_NEW_TOKENS": "8",
        **extra,
    }


async def ask_a_running_bot(
    bot_api: BotApiStandIn,
    environment: dict[str, str],
    cwd: Path,
    *,
    user_id: int,
    ready: Callable[[], object],
) -> ProcessRun:
    """Start the bot, wait until `ready()`, send a photo with a question, then SIGTERM it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=cwd, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await bot_api.wait_for(ready, timeout=90)
        chat = bot_api.private_chat(user_id)
        await bot_api.send_photo(chat, bot_api.user(user_id), image_bytes("red"), caption="what is it?")
        [answer] = await bot_api.wait_for_bot_message(chat, timeout=60)
        await bot_api.wait_quiet(quiet=0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return ProcessRun(answer=answer, returncode=process.returncode, log=output.decode())


class BotProcess:
    """`idefics-bot run` as a child process that a test can stop (SIGTERM) or kill (SIGKILL)."""

    def __init__(
        self, bot_api: BotApiStandIn, environment: dict[str, str], cwd: Path,
        command: tuple[str, ...] = ("bot", "run"),  # the module run with -m, and its arguments
    ) -> None:
        self._bot_api, self._environment, self._cwd = bot_api, environment, cwd
        self._command = command
        self._process: asyncio.subprocess.Process | None = None
        self.log = ""

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def launch(self, **settings: str) -> BotProcess:
        """Start it (with these settings on top) without waiting for it to be ready."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *self._command, cwd=self._cwd, env={**self._environment, **settings},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        return self

    async def start(self, timeout: float = 90, **settings: str) -> BotProcess:
        """Start it (with these settings on top) and wait until it is polling, its post_init done."""
        registered = len(self._bot_api.calls_to("setMyCommands"))
        await self.launch(**settings)
        await self._bot_api.wait_for(
            lambda: len(self._bot_api.calls_to("setMyCommands")) > registered or self._process.returncode,
            timeout=timeout,
        )
        assert self._process.returncode is None, await self._output()
        return self

    async def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `how` and wait for the process to end; its exit status."""
        assert self._process is not None
        self._process.send_signal(how)
        await asyncio.wait_for(self._output(), timeout)
        return self._process.returncode

    async def _output(self) -> str:
        output, _ = await self._process.communicate()
        self.log += output.decode()
        return self.log

    async def __aenter__(self) -> BotProcess:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._output()
