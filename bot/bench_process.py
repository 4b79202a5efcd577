"""The crowd of `python -m bot.bench` answered by a bot in a process of its own, as it is deployed.

On Telegram the Bot API's work (taking updates, answering every sendMessage) happens on Telegram's
machines; a bot sharing its event loop with the stand-in also pays for the stand-in's side of every
call. So for updates per second the bench starts the bot as a separate program (`python -m
bot.bench_process`: `idefics-bot run`, with its settings from the environment, answered by the
instant scripted model) against the stand-in running in the bench's own process, as the tests of
several bot processes do, and stops it with SIGTERM, as a service manager does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import bot
from bot.app import ALLOWED_UPDATES, build_application
from bot.bench_runs import BROADCAST_RATE, crowd_answered, fresh_database
from bot.logging_setup import configure_logging
from bot.scripted_model import ScriptedModel
from bot.settings import Settings
from bot.webhooks import run_until_stopped
from model.backend import ModelBackend
from standin.telegram import BotApiStandIn, FloodLimits, Window

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
OUR_PREFIXES = ("TELEGRAM_", "DATABASE_", "MODEL_", "TGI_", "WEBHOOK_", "METRICS_")  # never inherited


async def throughput_of_own_process(
    workdir: Path, *, users: int, messages: int, database_url: str | None = None
) -> float:
    """`bot.bench_runs.throughput`'s crowd and figure, the bot in its own process; raises BenchFailed.
    `database_url`: a PostgreSQL server, as for `throughput` (by default a fresh SQLite file)."""
    standin = BotApiStandIn(flood_limits=FloodLimits(overall=Window(int(BROADCAST_RATE), 1.0)))
    await standin.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if database_url is None:
                database = f"sqlite+aiosqlite:///{workdir / f'crowd-{time.monotonic_ns()}.sqlite3'}"
            else:
                database = await stack.enter_async_context(fresh_database(database_url))
            await stack.enter_async_context(_bot_process(standin, database, workdir))
            return await crowd_answered(standin, users=users, messages=messages)
    finally:
        await standin.stop()


@contextlib.asynccontextmanager
async def _bot_process(standin: BotApiStandIn, database_url: str, workdir: Path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith(OUR_PREFIXES)}
    environment |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(bot.__file__).parents[1]), os.environ.get("PYTHONPATH")])),
        "TELEGRAM_BOT_TOKEN": standin.token,
        "TELEGRAM_API_URL": standin.api_root,
        "DATABASE_URL": database_url,
        "TELEGRAM_MAX_MESSAGES_PER_S": str(BROADCAST_RATE),
        "CONVERSATION_RETENTION_DAYS": "0",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.bench_process", env=environment, cwd=workdir  # cwd: no .env is read
    )
    try:
        # Polling has begun once the bot asks for updates.
        await standin.wait_for(lambda: standin.calls_to("getUpdates") or process.returncode is not None,
                               timeout=STARTUP_TIMEOUT_S)
        if process.returncode is not None:
            raise RuntimeError(f"the bot process ended at its start (exit status {process.returncode})")
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _instant_model(settings: Settings) -> ModelBackend:
    return ScriptedModel(tokens=1)


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level, [settings.telegram_bot_token.get_secret_value()])
    run_until_stopped(build_application(settings, model_service_factory=_instant_model), ALLOWED_UPDATES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
