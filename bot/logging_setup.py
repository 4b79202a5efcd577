"""Logging for the bot, with the bot token scrubbed from every record before any handler sees it.

python-telegram-bot (at DEBUG) and httpx (at INFO) log request URLs, and Telegram puts the token in the
URL path. A filter on one handler would miss handlers added later (pytest's caplog, a user's own), so the
scrubbing happens where records are born: in the log record factory.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

REDACTED = "<redacted-token>"
# Anything shaped like a bot token, also ones we were not told about (e.g. a second bot in the same process).
TOKEN_SHAPE = re.compile(r"\d{3,20}(?::|%3A)[A-Za-z0-9_-]{30,}")
# A line per HTTP request, per migration step, per plugin at start-up and per job run (the JobQueue's
# scheduler): shown only when debugging.
CHATTY_LIBRARIES = ("httpx", "httpx2", "alembic", "apscheduler")


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return TOKEN_SHAPE.sub(REDACTED, text)


def install_token_redaction(secrets: Iterable[str]) -> None:
    """Make every log record created from now on free of the given secrets and of token-shaped strings."""
    known = tuple(
        sorted({variant for s in secrets if s for variant in (s, quote(s, safe=""))}, key=len, reverse=True)
    )
    previous_factory = logging.getLogRecordFactory()
    if getattr(previous_factory, "redacts_tokens", False):
        previous_factory = previous_factory.wrapped  # re-installing replaces, never stacks

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous_factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the caller's bug; still never leak the raw args
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = _scrub(message, known), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info), known)
        if record.stack_info:
            record.stack_info = _scrub(record.stack_info, known)
        return record

    factory.redacts_tokens = True  # type: ignore[attr-defined]
    factory.wrapped = previous_factory  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(level: str, secrets: Iterable[str], *, log_file: Path | None = None) -> None:
    """Log at `level` to stderr, or to `log_file` with only warnings on stderr; chatty libraries are
    kept down unless debugging."""
    install_token_redaction(secrets)
    to_stderr = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [to_stderr]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.touch(mode=0o600, exist_ok=True)  # only the bot's user reads what the bot did
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        to_stderr.setLevel(logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    if level != "DEBUG":
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
