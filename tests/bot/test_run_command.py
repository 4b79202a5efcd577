"""`idefics-bot run` for real: a separate process polling the stand-in, answering, and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from storage.store import Store
from storage.types import TurnStatus
from tests.bot.conftest import image_bytes

USER_ID = 7001
REPO_ROOT = Path(__file__).parents[2]


async def test_run_command_answers_a_photo_and_stops_cleanly_on_sigterm(
    bot_api, database_url, tiny_checkpoint, tmp_path
):
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "DATABASE_", "MODEL_"))},
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "TELEGRAM_BOT_TOKEN": bot_api.token,
        "TELEGRAM_API_URL": bot_api.api_root,
        "DATABASE_URL": database_url,
        "MODEL_ID": str(tiny_checkpoint),
        "MAX_NEW_TOKENS": "8",
        "LOG_LEVEL": "DEBUG",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await bot_api.wait_for(lambda: bot_api.my_commands(), timeout=90)  # post_init ran
        chat = bot_api.private_chat(USER_ID)
        await bot_api.send_photo(chat, bot_api.user(USER_ID), image_bytes("red"), caption="what is it?")
        [answer] = await bot_api.wait_for_bot_message(chat, timeout=60)
        await bot_api.wait_quiet(quiet=0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    log = output.decode()
    assert process.returncode == 0, log[-3000:]
    assert "Traceback" not in log
    assert bot_api.token.split(":", 1)[1] not in log
    async with Store(database_url) as store:
        history = await store.history((await store.active_conversation(USER_ID, USER_ID)).id)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.COMPLETE),
    ]
    assert history[1].message_ids == (answer.message_id,)
