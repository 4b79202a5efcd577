"""The `idefics-bot` command: run the bot, try it offline, upgrade the database, make a test checkpoint.

Start-up problems end the process with one sentence that says what to change (exit status 2 for a
token problem, 1 for the rest), never with a traceback or library noise in front of it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
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
SETTINGS_NOTE = "Settings come from the environment or a .env file in the current folder; see .env.example."
TRY_MAX_NEW_TOKENS = 40  # a tiny model on two CPU cores writes that in a few seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idefics-bot",
        description="A self-hosted Telegram bot for talking about images with IDEFICS.",
        epilog=f"{SETTINGS_NOTE} Without a command, `run` is meant.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    commands.add_parser(
        "run",
        help="start the bot (the default)",
        description="Start the bot: upgrade the database, load the model, then answer Telegram until "
        "stopped with Ctrl-C or SIGTERM (answers being written are told and recorded first). "
        "Needs TELEGRAM_BOT_TOKEN.",
        epilog=SETTINGS_NOTE,
    )
    _add_try(commands)
    commands.add_parser(
        "migrate",
        help="upgrade the database schema to the latest revision",
        description="Upgrade the database at DATABASE_URL to the latest schema revision and exit "
        "(`run` does this too when it starts).",
        epilog=SETTINGS_NOTE,
    )
    _add_make_tiny_model(commands)
    return parser


def _add_try(commands: argparse._SubParsersAction) -> None:
    try_out = commands.add_parser(
        "try",
        help="chat with the bot in this terminal, offline, without a Telegram token",
        description="Run the real bot against a Telegram Bot API stand-in on 127.0.0.1 and chat with it "
        "here: type text, or an image's path followed by a question. Without MODEL_ID it uses a tiny "
        "random model made once under ./data/ (nonsense answers, everything else real); with MODEL_ID "
        "it loads that model: a local check of a GPU set-up. Reads lines from a pipe too.",
        epilog=SETTINGS_NOTE,
    )
    try_out.add_argument(
        "--max-new-tokens", type=_answer_length, default=TRY_MAX_NEW_TOKENS, metavar="N",
        help="longest answer in tokens (default: %(default)s; MAX_NEW_TOKENS is not used here)",
    )
    try_out.add_argument(
        "--tiny", action="store_true", help="use the tiny random model even when MODEL_ID is set"
    )


def _add_make_tiny_model(commands: argparse._SubParsersAction) -> None:
    tiny = commands.add_parser(
        "make-tiny-model",
        help="write a small random IDEFICS checkpoint (offline demos, tests)",
        description="Write a random IDEFICS checkpoint (model, processor, tokenizer) that loads like the "
        "real one; use it with MODEL_ID=DIRECTORY. Its answers are nonsense.",
    )
    tiny.add_argument("directory", type=Path, help="where to write it (created if missing)")
    tiny.add_argument(
        "--size", choices=["tiny", "small", "proportional"], default="tiny",
        help="tiny: 64-dim, loads in well under a second; small: about 30 M parameters, for CPU "
        "benchmarks; proportional: small with idefics-9b's image path in proportion (64 latents, "
        "cross-attention every 4 layers) (default: %(default)s)",
    )
    tiny.add_argument(
        "--tokenizer", type=Path, metavar="PATH",
        help="use this real tokenizer (LLaMA's SentencePiece tokenizer.model, or a tokenizer.json) "
        "instead of a small trained one, written in the hub's layout",
    )


def _version() -> str:
    try:
        return version("idefics-bot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


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
    from bot.app import ALLOWED_UPDATES, build_application  # heavy imports (torch) only when needed
    from bot.webhooks import run_until_stopped

    application = build_application(settings)
    logging.getLogger("telegram.ext").addFilter(_without_start_up_noise)
    try:
        run_until_stopped(application, ALLOWED_UPDATES)  # polling, or by webhook
    except Exception as error:  # noqa: BLE001 - known start-up failures become one sentence
        return explain_start_failure(error, settings)
    return 0


def explain_start_failure(error: Exception, settings: Settings) -> int:
    """Say in one sentence why the bot could not start, and return the exit status; re-raise the rest."""
    from sqlalchemy.exc import SQLAlchemyError
    from telegram.error import BadRequest, InvalidToken, NetworkError

    from bot.errors import ListenFailed
    from model.errors import ModelError
    from storage.errors import StorageError

    if isinstance(error, InvalidToken):
        print(f"idefics-bot: Telegram rejected TELEGRAM_BOT_TOKEN. {TOKEN_HELP}", file=sys.stderr)
        return 2
    webhook = bool(settings.telegram_webhook_url)
    if isinstance(error, ListenFailed):
        sentence = str(error)
    elif webhook and isinstance(error, BadRequest):  # setWebhook is the only call that can say this
        sentence = (f"Telegram refused TELEGRAM_WEBHOOK_URL ({error.message}). It must be an https URL "
                    "on port 443, 80, 88 or 8443 that reaches this bot.")
    elif webhook and isinstance(error, OSError) and error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        sentence = (f"could not listen for webhooks on WEBHOOK_LISTEN={settings.webhook_listen} "
                    f"WEBHOOK_PORT={settings.webhook_port} ({error.strerror}); choose a free port.")
    elif isinstance(error, NetworkError):
        sentence = (f"could not reach the Bot API at {settings.telegram_api_url} ({error}). "
                    "Check the network connection and TELEGRAM_API_URL.")
    elif isinstance(error, ModelError):
        sentence = f"could not start the model. {error}"
    elif isinstance(error, (StorageError, SQLAlchemyError, OSError)):
        sentence = (f"could not open the database at DATABASE_URL ({error.__class__.__name__}: {error}). "
                    "Check the URL and that its folder or server is reachable.")
    else:
        raise error
    print(f"idefics-bot: {sentence}", file=sys.stderr)
    return 1


def _without_start_up_noise(record: logging.LogRecord) -> bool:
    """PTB logs a rejected token or an unreachable server with a traceback, and a start-up it gives up
    on as "Failed run number 0 of 0"; `explain_start_failure` says all of that in one sentence."""
    from telegram.error import InvalidToken, NetworkError

    if record.exc_info and isinstance(record.exc_info[1], (InvalidToken, NetworkError)):
        if record.getMessage().startswith("Network Retry Loop (Bootstrap"):
            return False  # the start-up gave up: the sentence follows
        record.exc_info, record.exc_text = None, None  # polling retries: the message says enough
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


def _try(settings: Settings, max_new_tokens: int, tiny: bool) -> int:
    from bot.try_out import try_out

    try:
        return try_out(settings, max_new_tokens=max_new_tokens, tiny=tiny)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - known start-up failures become one sentence
        return explain_start_failure(error, settings)


def _answer_length(value: str) -> int:
    """--max-new-tokens: what MAX_NEW_TOKENS accepts."""
    limits = Settings.model_fields["max_new_tokens"].metadata
    low = next(rule.ge for rule in limits if hasattr(rule, "ge"))
    high = next(rule.le for rule in limits if hasattr(rule, "le"))
    if not value.isdigit() or not low <= int(value) <= high:
        raise argparse.ArgumentTypeError(f"give a whole number from {low} to {high}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "make-tiny-model":
        return _make_tiny_model(args.directory, args.size, args.tokenizer)
    settings = _load_settings()
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "try":
        return _try(settings, args.max_new_tokens, args.tiny)
    return _run(settings)
