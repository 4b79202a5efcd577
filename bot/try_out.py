"""`idefics-bot try`: the real bot, offline, talked to from this terminal instead of Telegram.

It starts the Bot API stand-in the tests use (`standin.telegram`) on 127.0.0.1, runs the real
Application against it (database, model service, handlers, streaming, buttons) and plays one
Telegram user whose messages are the lines read here:

    what is in the picture?            text
    photos/cat.jpg what is it?         a photo, by path, with the rest of the line as its caption
    photos/cat.jpg /classify cat, dog  a photo captioned with a task command
    ^ /describe                        a message replying to the last photo sent
    /new  /retry  /mode  /help …       commands, as they are
    !2                                 press button 2 of the newest message with buttons
    /quit or Ctrl-D                    the end

The bot's drafts are printed as they grow, then its messages (and later edits) as they arrive.
Without MODEL_ID (or with --tiny) the model is a tiny random checkpoint, made once under ./data/
(its answers are nonsense, everything else is real); with MODEL_ID it is that model, which makes this
a check of a GPU set-up before any Telegram token exists. Answers are kept short (--max-new-tokens);
the database is a temporary SQLite file, gone at the end; the log goes to ./data/try.log.

Lines from a pipe are sent one at a time, each once the bot has finished with the one before, so a
script sees every answer before its next message; typed lines are sent at once (so /cancel works).
"""

from __future__ import annotations

import asyncio
import mimetypes
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any, TextIO

from PIL import Image, UnidentifiedImageError
from telegram.ext import Application

from bot.app import ALLOWED_UPDATES, build_application
from bot.lifecycle import serving
from bot.logging_setup import configure_logging
from bot.runtime import runtime_of
from bot.settings import Settings
from standin.telegram import BotApiStandIn, BotMessage

DATA_DIR = Path("data")
TINY_MODEL_DIR = DATA_DIR / "try-model"
LOG_FILE = DATA_DIR / "try.log"
USER_ID = 1001
SETTLED_AFTER_S = 0.2  # nothing in flight for this long: the bot has done all it was asked
WATCH_EVERY_S = 0.05
QUIT = ("/quit", "/exit")


def try_out(settings: Settings, *, max_new_tokens: int, tiny: bool) -> int:
    """Run the try-out until the input ends; the exit status. Start-up failures are raised."""
    use_tiny = tiny or "model_id" not in settings.model_fields_set
    configure_logging(settings.log_level, [], log_file=LOG_FILE)
    if use_tiny:  # its loading takes no time worth a progress bar; a real model's download does
        _quiet_transformers()
    model_id = str(_tiny_model()) if use_tiny else settings.model_id
    interactive = sys.stdin.isatty()
    with tempfile.TemporaryDirectory(prefix="idefics-try-") as scratch:
        overrides = {
            "model_id": model_id,
            "max_new_tokens": max_new_tokens,
            "database_url": f"sqlite+aiosqlite:///{Path(scratch) / 'try.sqlite3'}",
            "allowed_user_ids": frozenset(),  # the one person here may do everything
            "allowed_chat_ids": frozenset(),
            "admin_user_ids": frozenset({USER_ID}),
            # The stand-in is polled on 127.0.0.1: a deployment's webhook and endpoint stay out of it.
            "telegram_webhook_url": "",
            "metrics_port": None,
        }
        if use_tiny:
            overrides["model_backend"] = "local"
        note = "a tiny random model: its answers are nonsense" if use_tiny else "MODEL_ID"
        print(f"Model: {model_id} ({note}); answers up to {max_new_tokens} tokens; log: {LOG_FILE}")
        asyncio.run(_chat(overrides, sys.stdout, interactive))
    return 0


def _tiny_model() -> Path:
    """The tiny checkpoint, made the first time (into a scratch folder, renamed when whole) and kept."""
    if TINY_MODEL_DIR.is_dir():
        return TINY_MODEL_DIR
    from model.tiny import make_tiny_checkpoint

    print(f"Making a tiny random IDEFICS checkpoint in {TINY_MODEL_DIR} (once)…")
    partial = TINY_MODEL_DIR.with_name(TINY_MODEL_DIR.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_tiny_checkpoint(partial)
    partial.rename(TINY_MODEL_DIR)
    return TINY_MODEL_DIR


def _quiet_transformers() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


async def _chat(overrides: dict[str, Any], out: TextIO, interactive: bool) -> None:
    async with BotApiStandIn(bot_username="idefics_try_bot") as telegram_api:
        settings = Settings(
            telegram_bot_token=telegram_api.token, telegram_api_url=telegram_api.api_root, **overrides
        )
        application = build_application(settings)
        print(f"Starting the bot against a Bot API stand-in at {telegram_api.api_root}…", file=out)
        async with serving(application, poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES):
            await TerminalChat(telegram_api, application, out=out, interactive=interactive).run()


class TerminalChat:
    """One Telegram user played from the terminal: lines become messages, the bot's replies are printed."""

    def __init__(
        self, telegram_api: BotApiStandIn, application: Application, *, out: TextIO, interactive: bool
    ) -> None:
        self._api = telegram_api
        self._application = application
        self._out = out
        self._interactive = interactive
        self._user = telegram_api.user(USER_ID, "You")
        self._chat = telegram_api.private_chat(USER_ID, "You")
        self._last_photo: dict[str, Any] | None = None
        self._printed: dict[int, tuple[str, list[tuple[str, str | None]]]] = {}  # id -> text, buttons
        self._drafts_seen = 0
        self._draft_line_open = False  # an interactive draft line waiting to be overwritten
        self._presses: list[str] = []  # callback query ids whose notice is not printed yet

    async def run(self) -> None:
        self._say(HELP.format(bot=self._api.bot_user.username))
        lines = _lines_from(sys.stdin)
        watcher = asyncio.create_task(self._watch(), name="try-watch")
        try:
            while (line := await lines.get()) is not None:
                line = line.strip()
                if line in QUIT:
                    break
                if not line:
                    continue
                if not self._interactive:
                    self._say(f"> {line}")
                await self._send(line)
                if not self._interactive:
                    await self._settled()
            await self._settled()
        finally:
            watcher.cancel()
            self._print_news()

    # ---- what the person does ---------------------------------------------------------------

    async def _send(self, line: str) -> None:
        if line.startswith("!") and line[1:].isdigit():
            await self._press(int(line[1:]))
        elif line.startswith("^"):
            if self._last_photo is None:
                self._say("(no photo to reply to yet: send one by its path first)")
                return
            await self._api.send_text(self._chat, self._user, line[1:].strip(), reply_to=self._last_photo)
        elif (path := _leading_path(line)) is not None:
            await self._send_file(*path)
        else:
            await self._api.send_text(self._chat, self._user, line)

    async def _send_file(self, path: Path, caption: str) -> None:
        """A readable image goes as a photo, anything else as a file (as Telegram apps do)."""
        data = path.read_bytes()
        try:
            with Image.open(path) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            await self._api.send_document(self._chat, self._user, data, path.name, mime, caption=caption)
            return
        self._last_photo = await self._api.send_photo(self._chat, self._user, data, caption=caption or None)

    async def _press(self, number: int) -> None:
        with_buttons = [m for m in self._api.bot_messages(self._chat) if _callback_buttons(m)]
        buttons = _callback_buttons(with_buttons[-1]) if with_buttons else []
        if not 1 <= number <= len(buttons):
            self._say(f"(no button {number} on the newest message with buttons)")
            return
        query = await self._api.press_button(self._chat, self._user, with_buttons[-1], buttons[number - 1][1])
        self._presses.append(query["id"])

    # ---- what the bot does ------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            self._print_news()
            await asyncio.sleep(WATCH_EVERY_S)

    def _print_news(self) -> None:
        drafts = [draft.text for draft in self._api.draft_records if draft.chat_id == self._chat.id]
        for text in drafts[self._drafts_seen :]:
            self._show_draft(text)
        self._drafts_seen = len(drafts)
        for message in self._api.bot_messages(self._chat):
            state = (message.text, message.buttons)
            if self._printed.get(message.message_id) != state:
                self._show_message(message, edited=message.message_id in self._printed)
                self._printed[message.message_id] = state
        for query_id in list(self._presses):
            if query_id in self._api.callback_answers:
                self._presses.remove(query_id)
                notice = self._api.callback_answers[query_id].get("text")
                if notice:
                    self._say(f"  ({_printable(notice)})")

    def _show_draft(self, text: str) -> None:
        line = " ".join(_printable(text).split())
        if not self._interactive:
            self._say(f"  … {line}")
            return
        width = shutil.get_terminal_size().columns - 4
        self._out.write(f"\r\033[K  … {line[-width:]}")
        self._out.flush()
        self._draft_line_open = True

    def _show_message(self, message: BotMessage, *, edited: bool) -> None:
        name = self._api.bot_user.first_name + (" (edited)" if edited else "")
        body = _printable(message.text).replace("\n", "\n" + " " * (len(name) + 2))
        self._say(f"{name}: {body}")
        buttons = _callback_buttons(message)
        if buttons:
            labels = (f"[!{number} {_printable(label)}]" for number, (label, _) in enumerate(buttons, 1))
            self._say(" " * (len(name) + 2) + "  ".join(labels))

    def _say(self, text: str) -> None:
        if self._draft_line_open:
            self._out.write("\r\033[K")
            self._draft_line_open = False
        print(text, file=self._out, flush=True)

    async def _settled(self) -> None:
        """Wait until the bot has taken every message and finished all it started for them."""
        runtime = runtime_of(self._application)
        idle_since: float | None = None
        while idle_since is None or time.monotonic() - idle_since < SETTLED_AFTER_S:
            busy = (
                self._api.updates.pending  # not yet fetched (or fetched but not confirmed)
                or self._application.update_queue.qsize()
                or self._application.update_processor.current_concurrent_updates  # handlers
                or runtime.answers.pending_count()  # answers queued or being written (albums waiting too)
            )
            idle_since = None if busy else idle_since or time.monotonic()
            await asyncio.sleep(WATCH_EVERY_S)


HELP = """\
You are chatting with @{bot} (a private chat). Type a message and press Enter.
  photos/cat.jpg what is it?   an image by its path, then your question (or a command: /caption,
                               /classify cat, dog, /story, /describe)
  ^ /describe                  reply to the last image you sent
  /new /retry /cancel /mode /settings /help   commands;  !1 presses button 1;  /quit or Ctrl-D ends"""


def _leading_path(line: str) -> tuple[Path, str] | None:
    """(file, rest of the line) when the line starts with the path of an existing file; a path with
    spaces is written in quotes."""
    if line[0] in "'\"":
        end = line.find(line[0], 1)
        if end < 0:
            return None
        word, rest = line[1:end], line[end + 1 :]
    else:
        word, _, rest = line.partition(" ")
    path = Path(word).expanduser()
    return (path, rest.strip()) if path.is_file() else None


def _printable(text: str) -> str:
    """Model output is untrusted: control characters (an escape sequence could rewrite the terminal)
    are shown as escapes, not obeyed; line breaks stay."""
    return "".join(
        char if char == "\n" or unicodedata.category(char) != "Cc" else repr(char)[1:-1] for char in text
    )


def _callback_buttons(message: BotMessage) -> list[tuple[str, str]]:
    return [(label, data) for label, data in message.buttons if data is not None]


def _lines_from(stream: TextIO) -> asyncio.Queue[str | None]:
    """Lines of `stream`, then None at its end, read by a daemon thread (a blocked read never keeps
    the process alive, and the event loop never waits for the keyboard)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in stream:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="try-stdin", daemon=True).start()
    return lines
