"""Every setting is documented in .env.example, and that file as-is gives a working configuration."""

import re
from pathlib import Path

from bot.settings import Settings

EXAMPLE = Path(__file__).parents[1] / ".env.example"


def test_env_example_lists_every_setting_with_an_explanation():
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", text, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}
    for name in documented:
        before = text.split(f"\n{name}=")[0]
        assert before.rstrip().splitlines()[-1].startswith("#"), f"{name} has no explanation above it"


def test_env_example_defaults_load_once_a_token_is_filled_in(tmp_path, monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = EXAMPLE.read_text().replace("TELEGRAM_BOT_TOKEN=\n", "TELEGRAM_BOT_TOKEN=123:abc\n")
    (tmp_path / ".env").write_text(env)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.model_id == "HuggingFaceM4/idefics-9b-instruct"
    assert settings.database_url.startswith("sqlite+aiosqlite:///data/")
    assert settings.modes_dir is None and settings.allowed_user_ids == frozenset()
    assert settings.bot_api_base_url == "https://api.telegram.org/bot"
    assert settings.bot_api_file_url == "https://api.telegram.org/file/bot"


def test_deployment_settings_are_checked_when_read(monkeypatch):
    import pytest
    from pydantic import ValidationError

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=None, tgi_url=" http://tgi-1:80/, http://tgi-2:80,http://tgi-1:80 ",
                        metrics_port="", webhook_secret="")
    assert settings.tgi_urls == ("http://tgi-1:80", "http://tgi-2:80")
    assert settings.metrics_port is None and settings.webhook_secret is None
    assert settings.telegram_webhook_url == "" and settings.model_backend == "local"
    bad = {
        "tgi_url": "tgi:80",
        "telegram_webhook_url": "bot.example.com/hook",
        "webhook_secret": "has spaces",
        "model_backend": "vllm",
        "metrics_port": "70000",
    }
    for name, value in bad.items():
        with pytest.raises(ValidationError, match=name):
            Settings(_env_file=None, **{name: value})
