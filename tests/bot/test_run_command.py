"""`idefics-bot run` for real: a separate process polling the stand-in, answering, and stopping on SIGTERM."""

from __future__ import annotations

from storage.store import Store
from storage.types import TurnStatus
from tests.bot.bot_process import ask_a_running_bot, bot_environment

USER_ID = 7001


async def test_run_command_answers_a_photo_and_stops_cleanly_on_sigterm(
    bot_api, database_url, tiny_checkpoint, tmp_path
):
    environment = bot_environment(bot_api, database_url, tiny_checkpoint, LOG_LEVEL="DEBUG")
    post_init_ran = bot_api.my_commands
    run = await ask_a_running_bot(bot_api, environment, tmp_path, user_id=USER_ID, ready=post_init_ran)
    answer, log = run.answer, run.log
    assert run.returncode == 0, log[-3000:]
    assert "Traceback" not in log
    assert bot_api.token.split(":", 1)[1] not in log
    async with Store(database_url) as store:
        history = await store.history((await store.active_conversation(USER_ID, USER_ID)).id)
    assert [(turn.role, turn.status) for turn in history] == [
        ("user", TurnStatus.COMPLETE),
        ("assistant", TurnStatus.COMPLETE),
    ]
    assert history[1].message_ids == (answer.message_id,)
