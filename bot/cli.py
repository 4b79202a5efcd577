"""The `idefics-bot` command: run the bot, make the offline test checkpoint, upgrade the database."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.logging_setup import configure_logging
from bot.settings import Settings

log = logging.getLogger(__name__)

TOKEN_HELP = (
    "To get a token, open Telegram, talk to @BotFather, send /newbot and follow the steps; then put the "
    "token it gives you in a .env file next to where you run the bot, as TELEGRAM_BOT_TOKEN=123456789:AAH... "
    "(see .env.example)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idefics-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="start the bot (the default)")
    tiny = commands.add_parser(
        "make-tiny-model", help="write a small random IDEFICS checkpoint (offline demos, tests)"
    )
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--size", choices=["tiny", "small"], default="tiny")
    tiny.add_argument(
        "--tokenizer", type=Path, metavar="PATH",
        help="use this real tokenizer (tokenizer.model or tokenizer.json) instead of a small trained one",
    )
    commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    return parser


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        sys.exit(f"idefics-bot: invalid settings: {problems}. See .env.example for every setting.")


def _run(settings: Settings) -> int:
    problem = settings.token_problem()
    if problem:
        print(f"idefics-bot: {problem} {TOKEN_HELP}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, [settings.telegram_bot_token.get_secret_value()])
    from sqlalchemy.exc import SQLAlchemyError
    from telegram.error import InvalidToken, NetworkError

    from bot.app import build_application  # heavy imports (torch) only for the command that needs them
    from model.errors import ModelError
    from storage.errors import StorageError

    application = build_application(settings)
    logging.getLogger("telegram.ext").addFilter(_without_connection_tracebacks)
    try:
        application.run_polling(allowed_updates=["message", "edited_message", "callback_query"])
    except InvalidToken:
        print(f"idefics-bot: Telegram rejected TELEGRAM_BOT_TOKEN. {TOKEN_HELP}", file=sys.stderr)
        return 2
    except NetworkError as error:
        print(
            f"idefics-bot: could not reach the Bot API at {settings.telegram_api_url} ({error}). "
            "Check the network connection and TELEGRAM_API_URL.",
            file=sys.stderr,
        )
        return 1
    except ModelError as error:
        print(f"idefics-bot: could not start the model. {error}", file=sys.stderr)
        return 1
    except (StorageError, SQLAlchemyError, OSError) as error:
        print(
            f"idefics-bot: could not open the database at DATABASE_URL "
            f"({error.__class__.__name__}: {error}). "
            "Check the URL and that its folder or server is reachable.",
            file=sys.stderr,
        )
        return 1
    return 0


def _without_connection_tracebacks(record: logging.LogRecord) -> bool:
    """PTB's retry loop logs a rejected token or an unreachable server with a traceback; the message says
    all there is to say (and `_run` explains a start-up failure in one sentence)."""
    from telegram.error import InvalidToken, NetworkError

    if record.exc_info and isinstance(record.exc_info[1], (InvalidToken, NetworkError)):
        record.exc_info, record.exc_text = None, None
    return True


def _make_tiny_model(directory: Path, size: str, tokenizer: Path | None) -> int:
    from model.tiny import make_tiny_checkpoint

    try:
        path = make_tiny_checkpoint(directory, size=size, tokenizer_path=tokenizer)
    except ValueError as error:  # a tokenizer file that is not one
        print(f"idefics-bot: {error}", file=sys.stderr)
        return 2
    with_tokenizer = f" with the tokenizer {tokenizer}" if tokenizer else ""
    print(f"Wrote a random {size} IDEFICS checkpoint{with_tokenizer} to {path}. Use it with MODEL_ID={path}")
    return 0


def _migrate(settings: Settings) -> int:
    configure_logging(settings.log_level, [])
    from storage.migrations import upgrade_database

    upgrade_database(settings.database_url)
    print("Database is at the latest revision.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "make-tiny-model":
        return _make_tiny_model(args.directory, args.size, args.tokenizer)
    settings = _load_settings()
    if args.command == "migrate":
        return _migrate(settings)
    return _run(settings)
