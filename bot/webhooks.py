"""Webhook mode: Telegram POSTs each update to TELEGRAM_WEBHOOK_URL instead of the bot polling for it.

Empty TELEGRAM_WEBHOOK_URL means polling. Otherwise python-telegram-bot's own webhook server
(`Updater.start_webhook`, `Application.run_webhook`; tornado, the `webhooks` extra) listens on
WEBHOOK_LISTEN:WEBHOOK_PORT at the URL's path, calls setWebhook with the URL and the secret when it
starts, and answers 403 to any request whose `X-Telegram-Bot-Api-Secret-Token` header is not that
secret, so knowing the URL is not enough to feed the bot updates. WEBHOOK_SECRET sets the secret;
without it every start makes a random one (enough for one process, which gives it to Telegram at
each start). It is kept out of the logs like the token. Behind a reverse proxy that ends TLS, set
TELEGRAM_WEBHOOK_URL to the public https URL and WEBHOOK_LISTEN / WEBHOOK_PORT to where the proxy
forwards.

Telegram sends an update again when the bot's 200 did not reach it in time, so one update can arrive
twice; `bot.redelivery` handles it once.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telegram.ext import Application

from bot.errors import ListenFailed
from bot.settings import Settings

log = logging.getLogger(__name__)

OPTIONS_KEY = "idefics_webhook"


@dataclass(frozen=True)
class WebhookOptions:
    url: str  # the public URL Telegram posts to
    listen: str
    port: int
    secret_token: str = field(repr=False)

    @property
    def url_path(self) -> str:
        """Where PTB's server listens: the public URL's path (a proxy may forward it unchanged)."""
        return urlsplit(self.url).path or "/"

    def updater_arguments(self, allowed_updates: Sequence[str] | None) -> dict[str, Any]:
        """The keyword arguments of `Updater.start_webhook` and `Application.run_webhook`."""
        return {
            "listen": self.listen,
            "port": self.port,
            "url_path": self.url_path,
            "webhook_url": self.url,
            "secret_token": self.secret_token,
            "allowed_updates": allowed_updates,
        }


def webhook_options(settings: Settings) -> WebhookOptions | None:
    """The webhook these settings ask for, its secret settled; None for polling."""
    if not settings.telegram_webhook_url:
        return None
    if settings.webhook_secret is not None:
        secret = settings.webhook_secret.get_secret_value()
    else:
        secret = secrets.token_urlsafe(32)  # letters, digits, _ and -: what Telegram allows
        log.info("WEBHOOK_SECRET is not set: this run uses a random webhook secret")
    return WebhookOptions(
        url=settings.telegram_webhook_url,
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        secret_token=secret,
    )


def check_port_is_free(options: WebhookOptions) -> None:
    """Fail at once, before the model loads for minutes, when the webhook server could not listen."""
    try:
        with socket.create_server((options.listen, options.port)):
            pass
    except OSError as error:
        raise ListenFailed(
            f"could not listen for webhooks on WEBHOOK_LISTEN={options.listen} WEBHOOK_PORT={options.port} "
            f"({error.strerror or error}); choose a free port"
        ) from error


def install_webhook(application: Application, options: WebhookOptions | None) -> None:
    application.bot_data[OPTIONS_KEY] = options


def webhook_of(application: Application) -> WebhookOptions | None:
    """The webhook `build_application` settled for this application; None when it polls."""
    return application.bot_data.get(OPTIONS_KEY)


async def start_receiving(
    application: Application, allowed_updates: Sequence[str] | None, **polling: Any
) -> None:
    """Start the updater the way this application receives updates (`polling`: start_polling's options)."""
    options = webhook_of(application)
    if options is None:
        await application.updater.start_polling(allowed_updates=allowed_updates, **polling)
        return
    await application.updater.start_webhook(**options.updater_arguments(allowed_updates))
    log.info("updates come by webhook to %s (listening on %s:%d)", options.url, options.listen, options.port)


def run_until_stopped(application: Application, allowed_updates: Sequence[str]) -> None:
    """`idefics-bot run`: PTB's run_polling or run_webhook, which own the event loop and the signals."""
    options = webhook_of(application)
    if options is None:
        application.run_polling(allowed_updates=allowed_updates)
        return
    log.info("updates will come by webhook to %s (server on %s:%d)", options.url, options.listen, options.port)
    application.run_webhook(**options.updater_arguments(allowed_updates))
