"""The long-lived parts every handler needs, built in `post_init` and reached through the application.

There is one `BotRuntime` per Application (kept in `application.bot_data`), not a module global, so two
applications (a test that restarts the bot) never share state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from telegram.ext import Application, CallbackContext

from bot.albums import AlbumCollector
from bot.conversation_queue import ConversationQueue
from bot.errors import NotReady
from bot.settings import Settings
from model.backend import ModelBackend
from model.types import Preamble
from storage.store import Store

RUNTIME_KEY = "idefics_runtime"


@dataclass
class BotRuntime:
    settings: Settings
    store: Store
    model: ModelBackend
    modes: dict[str, Preamble] = field(default_factory=dict)
    default_preamble: Preamble | None = None  # PROMPT_PREAMBLE, resolved once at start-up
    answers: ConversationQueue = field(default_factory=ConversationQueue)
    albums: AlbumCollector = field(default_factory=AlbumCollector)  # photos sent together


def install_runtime(application: Application, runtime: BotRuntime) -> None:
    application.bot_data[RUNTIME_KEY] = runtime


def runtime_of(source: CallbackContext | Application) -> BotRuntime:
    """The application's runtime; NotReady while post_init is still running (or after shutdown)."""
    application = source if isinstance(source, Application) else source.application
    runtime = application.bot_data.get(RUNTIME_KEY)
    if runtime is None:
        raise NotReady("the bot is not started")
    return runtime


def current_runtime(application: Application) -> BotRuntime | None:
    return application.bot_data.get(RUNTIME_KEY)


def remove_runtime(application: Application) -> BotRuntime | None:
    return application.bot_data.pop(RUNTIME_KEY, None)
