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
