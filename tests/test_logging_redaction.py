"""The bot token must never appear in any log line, whoever logs it and at whatever level."""

import io
import logging

import pytest
import telegram

from bot.bot_api_http import AiohttpRequest
from bot.logging_setup import REDACTED, install_token_redaction

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"


@pytest.fixture
def redacted_logs():
    """Capture everything at DEBUG through an ordinary handler, with redaction installed."""
    original_factory = logging.getLogRecordFactory()
    install_token_redaction([TOKEN])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    logging.setLogRecordFactory(original_factory)


async def test_real_telegram_client_debug_logs_never_show_the_token(redacted_logs, caplog):
    caplog.set_level(logging.DEBUG)
    # Port 9 on loopback refuses connections at once: the client logs its request URL and then fails.
    bot = telegram.Bot(TOKEN, base_url="http://127.0.0.1:9/bot", request=AiohttpRequest(connect_timeout=1))
    with pytest.raises(telegram.error.NetworkError):
        await bot.get_me()
    logged = redacted_logs.getvalue() + caplog.text
    assert "127.0.0.1:9" in logged or "getMe" in logged  # the client did log about the request
    assert TOKEN not in logged
    assert TOKEN.split(":")[1] not in logged


def test_token_in_message_args_and_tracebacks_is_scrubbed(redacted_logs):
    log = logging.getLogger("some.library")
    log.info("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    log.warning("percent-encoded: /file/bot%s/photos/1.jpg", TOKEN.replace(":", "%3A"))
    try:
        raise RuntimeError(f"request to /bot{TOKEN}/sendMessage failed")
    except RuntimeError:
        log.exception("boom")
    logged = redacted_logs.getvalue()
    assert TOKEN.split(":")[1] not in logged
    assert logged.count(REDACTED) == 3
    assert "boom" in logged and "RuntimeError" in logged


def test_token_shaped_strings_are_scrubbed_even_when_not_announced(redacted_logs):
    other = "987654321:ZZZdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"
    logging.getLogger("x").info("other bot %s", other)
    assert other not in redacted_logs.getvalue()
