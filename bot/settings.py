"""The one typed settings object, read from the environment and `.env`, built once in `main()`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

TOKEN_PATTERN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{30,}$")
# What Telegram accepts as a webhook's secret_token (setWebhook).
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def _parse_id_list(value: object) -> object:
    """Accept "1, 2,3" and "" as well as JSON lists, so .env files stay readable."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return value
        return [int(part) for part in re.split(r"[,\s]+", value) if part]
    return value


IdList = Annotated[frozenset[int], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Optional here so that `migrate` and `make-tiny-model` run without one; `run` insists on it.
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"

    database_url: str = "sqlite+aiosqlite:///data/idefics-bot.sqlite3"
    conversation_retention_days: int = Field(default=90, ge=0)
    database_lock_timeout_s: float = Field(default=10.0, gt=0)
    max_unsaved_messages: int = Field(default=100, ge=0)

    # Polling when empty; else Telegram POSTs updates there and PTB's webhook server takes them.
    telegram_webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_secret: SecretStr | None = None  # None: a random one for each start

    model_backend: Literal["local", "tgi"] = "local"
    tgi_url: str = ""
    model_id: str = "HuggingFaceM4/idefics-9b-instruct"
    model_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    model_quantization: Literal["none", "8bit", "4bit"] = "none"
    max_new_tokens: int = Field(default=512, ge=1, le=2048)
    max_batch_size: int = Field(default=8, ge=1, le=64)
    max_images_in_prompt: int = Field(default=4, ge=1, le=32)
    # Bytes of prompt KV kept for reuse across turns and chats; empty: derived from free memory; 0: off.
    prefix_cache_bytes: int | None = Field(default=None, ge=0)
    # Most prompt tokens prefilled between two decode steps (0: a whole prompt at once).
    prefill_chunk_tokens: int = Field(default=256, ge=0)
    cpu_packed_linears: bool = True
    prompt_preamble: str = "default"
    modes_dir: Path | None = None
    story_temperature: float = Field(default=0.9, gt=0, le=2)
    story_top_p: float = Field(default=0.95, gt=0, le=1)

    allowed_user_ids: IdList = frozenset()
    allowed_chat_ids: IdList = frozenset()
    admin_user_ids: IdList = frozenset()

    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    image_decode_workers: int = Field(default=2, ge=1, le=32)
    decoded_image_cache_size: int = Field(default=32, ge=0, le=4096)  # pictures kept for next turns
    stream_edit_interval_s: float = Field(default=1.0, gt=0)
    # Telegram's limit for one bot, all chats together: 30 a second, up to 1000 with paid broadcasts.
    telegram_max_messages_per_s: float = Field(default=30.0, gt=0, le=1000)

    delivery_give_up_after_s: float = Field(default=300.0, gt=0)
    delivery_max_backoff_s: float = Field(default=30.0, gt=0)
    undelivered_retry_interval_s: float = Field(default=60.0, gt=0)
    stale_message_age_s: float = Field(default=3600.0, ge=0)
    interrupted_answers: Literal["answer_again", "note"] = "answer_again"
    inbox_lease_s: float = Field(default=30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # /healthz and /metrics; off when empty (0: any free port, for tests).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_listen: str = "127.0.0.1"

    @field_validator("allowed_user_ids", "allowed_chat_ids", "admin_user_ids", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        return _parse_id_list(value)

    @field_validator("modes_dir", "metrics_port", "webhook_secret", "prefix_cache_bytes", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("tgi_url")
    @classmethod
    def _tgi_urls(cls, value: str) -> str:
        if not value.strip():
            return ""
        from model.backends import parse_tgi_urls  # here: it imports the TGI client

        return ",".join(parse_tgi_urls(value))  # its ValueError says which URL is wrong

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be the https URL Telegram sends updates to, or empty for polling")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters, each A-Z, a-z, 0-9, _ or - (Telegram's rule)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("telegram_api_url")
    @classmethod
    def _api_root(cls, value: str) -> str:
        """The server's root, also when given with spaces, a trailing slash or the `/bot` endpoint."""
        return value.strip().rstrip("/").removesuffix("/bot").rstrip("/")

    @property
    def bot_api_base_url(self) -> str:
        return f"{self.telegram_api_url}/bot"

    @property
    def bot_api_file_url(self) -> str:
        return f"{self.telegram_api_url}/file/bot"

    @property
    def tgi_urls(self) -> tuple[str, ...]:
        return tuple(self.tgi_url.split(",")) if self.tgi_url else ()  # checked and tidied above

    def token_problem(self) -> str | None:
        """Why the token can't work, in words for the person running the bot; None when it looks right."""
        if self.telegram_bot_token is None or not self.telegram_bot_token.get_secret_value().strip():
            return "TELEGRAM_BOT_TOKEN is not set."
        if not TOKEN_PATTERN.match(self.telegram_bot_token.get_secret_value().strip()):
            return "TELEGRAM_BOT_TOKEN does not look like a bot token (it should look like 123456789:AAH...)."
        return None
