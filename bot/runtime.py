"""The long-lived parts every handler needs, built in `post_init` and reached through the application.

There is one `BotRuntime` per Application (kept in `application.bot_data`), not a module global, so two
applications (a test that restarts the bot) never share state. `queue_for_conversation` is how a
handler hands work to the runtime's conversation queue: behind the sender's earlier messages, with
unknown errors going to the application's one error handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Update
from telegram.ext import Application, CallbackContext, ContextTypes

from bot.albums import AlbumCollector
from bot.conversation_queue import ConversationKey, ConversationQueue
from bot.errors import NotReady
from bot.incoming import conversation_key
from bot.metrics import BotMetrics
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
    metrics: BotMetrics = field(default_factory=BotMetrics)  # this application's own registry


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


def queue_for_conversation(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    work: Callable[[], Awaitable[object]],
    *,
    name: str,
    key: ConversationKey | None = None,
) -> None:
    """Run `work` after the sender's earlier messages in this chat; unknown errors go to the error handler.

    Call it before the handler's first `await`: that fixes the order. `key` names the conversation
    when the update's message is not the person's own (a button press arrives on the bot's message)."""
    runtime = runtime_of(context)

    async def job() -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - handed to the application's one error handler
            await context.application.process_error(update, error)

    runtime.answers.submit(key or conversation_key(update.effective_message), job, name=name)
