"""The `idefics-bot` command explains what is wrong instead of printing a traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    ours = ("TELEGRAM_", "DATABASE_", "MODEL_", "TGI_", "WEBHOOK_", "METRICS_")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean_env, "PYTHONPATH": str(Path(__file__).parents[1]), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "TELEGRAM_BOT_TOKEN is not set"), ("not-a-token", "does not look like a bot token")],
)
def test_missing_or_malformed_token_says_how_to_get_one(tmp_path, token, expected):
    env = {} if token is None else {"TELEGRAM_BOT_TOKEN": token}
    result = run_cli("run", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "@BotFather" in result.stderr
    assert "Traceback" not in result.stderr
    if token:
        assert token not in result.stderr


def test_invalid_setting_is_named_without_traceback(tmp_path):
    result = run_cli("run", env={"MAX_NEW_TOKENS": "lots"}, cwd=tmp_path)
    assert result.returncode != 0
    assert "MAX_NEW_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_are_read_from_dotenv_file(tmp_path):
    from bot.settings import Settings

    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=1:x\nALLOWED_USER_IDS=5, 7\nLOG_LEVEL=debug\n")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        settings = Settings()
    finally:
        os.chdir(old)
    assert settings.allowed_user_ids == {5, 7}
    assert settings.log_level == "DEBUG"
    assert "1:x" not in repr(settings)


# Our own log lines: "2026-01-02 03:04:05,678 INFO bot.lifecycle: …" (or model., storage.)
BOT_LOG_LINE = re.compile(r"^\S+ \S+ [A-Z]+ (bot|model|storage)\.")
START_FAILURES = [
    ({"PROMPT_PREAMBLE": "no-such-mode"}, "no-such-mode"),
    ({"MODEL_ID": "/nonexistent/checkpoint"}, "/nonexistent/checkpoint"),
    ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
    ({"TELEGRAM_BOT_TOKEN": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"}, "rejected TELEGRAM_BOT_TOKEN"),
    ({"TELEGRAM_API_URL": "http://127.0.0.1:9"}, "could not reach the Bot API"),
    ({"MODEL_BACKEND": "tgi"}, "MODEL_BACKEND=tgi needs TGI_URL"),
    # {api_port}: the Bot API stand-in's port, taken by it.
    ({"TELEGRAM_WEBHOOK_URL": "https://bot.example/hook", "WEBHOOK_PORT": "{api_port}"},
     "could not listen for webhooks on WEBHOOK_LISTEN=127.0.0.1 WEBHOOK_PORT="),
    ({"METRICS_PORT": "{api_port}"}, "could not listen on METRICS_LISTEN=127.0.0.1 METRICS_PORT="),
]


@pytest.mark.parametrize(("overrides", "expected"), START_FAILURES, ids=lambda v: str(v)[:40])
async def test_start_up_failures_are_one_clear_message(tmp_path, tiny_checkpoint, overrides, expected):
    """Wrong settings found only at start-up end the process with a sentence, not a traceback."""
    result, env = await run_against_a_standin(tmp_path, tiny_checkpoint, overrides)
    assert_one_sentence(result, env, expected)


async def test_a_webhook_telegram_refuses_is_one_clear_message(tmp_path, tiny_checkpoint):
    refusal = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    overrides = {
        "TELEGRAM_WEBHOOK_URL": "http://bot.example/hook",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # the model loads before setWebhook: no bar in the way
    }
    result, env = await run_against_a_standin(
        tmp_path, tiny_checkpoint, overrides, prepare=lambda api: api.fail_next("setWebhook", 400, refusal)
    )
    # In PTB's words: it capitalises and drops the "Bad Request: " of Telegram's description.
    assert_one_sentence(result, env, "Telegram refused TELEGRAM_WEBHOOK_URL (Bad webhook: an https url must")


async def run_against_a_standin(tmp_path, tiny_checkpoint, overrides, prepare=None):
    """`idefics-bot run` against a Bot API stand-in; its result and environment."""
    import asyncio

    from standin.telegram.server import BotApiStandIn

    async with BotApiStandIn() as telegram_api:
        if prepare is not None:
            prepare(telegram_api)
        port = telegram_api.api_root.rsplit(":", 1)[1]
        env = {
            "TELEGRAM_BOT_TOKEN": telegram_api.token,
            "TELEGRAM_API_URL": telegram_api.api_root,
            "MODEL_ID": str(tiny_checkpoint),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}",
            "HF_HUB_OFFLINE": "1",
            **{name: value.replace("{api_port}", port) for name, value in overrides.items()},
        }
        return await asyncio.to_thread(run_cli, "run", env=env, cwd=tmp_path), env


def assert_one_sentence(result: subprocess.CompletedProcess, env: dict[str, str], expected: str) -> None:
    assert result.returncode in (1, 2), result.stderr[-2000:]
    assert expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert env["TELEGRAM_BOT_TOKEN"].split(":")[1] not in result.stderr
    before_the_sentence = result.stderr.split("idefics-bot: ")[0].splitlines()
    library_noise = [line for line in before_the_sentence if not BOT_LOG_LINE.match(line)]
    assert library_noise == [], result.stderr[-3000:]


def test_version_is_the_installed_one(tmp_path):
    from importlib.metadata import version

    result = run_cli("--version", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"idefics-bot {version('idefics-bot')}"


@pytest.mark.parametrize("command", ["run", "try", "migrate", "make-tiny-model"])
def test_each_command_says_what_it_does_and_what_its_arguments_mean(command, capsys):
    from bot.cli import _parser, main

    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    description = capsys.readouterr().out.split("\n\n")[1]
    assert len(description.split()) >= 8, description
    [subcommands] = [action for action in _parser()._actions if action.choices]
    arguments = [a for a in subcommands.choices[command]._actions if a.dest != "help"]
    assert all(argument.help for argument in arguments), [a.dest for a in arguments if not a.help]
