"""The long-lived parts every handler needs, built in `post_init` and reached through the application.

There is one `BotRuntime` per Application (kept in `application.bot_data`), not a module global, so two
applications (a test that restarts the bot) never share state. Handlers hand work to `runtime.inbox`
(`bot.inbox`), which stores it and runs it in the conversation's turn in `runtime.answers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telegram.ext import Application, CallbackContext

from bot.conversation_queue import ConversationQueue
from bot.delivery import DeliveryPolicy
from bot.errors import NotReady
from bot.metrics import BotMetrics
from bot.settings import Settings
from model.backend import ModelBackend
from model.types import Preamble
from storage.store import Store

if TYPE_CHECKING:
    from bot.inbox import Inbox

RUNTIME_KEY = "idefics_runtime"


@dataclass
class BotRuntime:
    settings: Settings
    store: Store
    model: ModelBackend
    modes: dict[str, Preamble] = field(default_factory=dict)
    default_preamble: Preamble | None = None  # PROMPT_PREAMBLE, resolved once at start-up
    answers: ConversationQueue = field(default_factory=ConversationQueue)
    metrics: BotMetrics = field(default_factory=BotMetrics)  # this application's own registry
    inbox_: Inbox | None = None  # set right after the runtime is built (the inbox needs it)

    @property
    def inbox(self) -> Inbox:
        if self.inbox_ is None:
            raise NotReady("the inbox is not open")
        return self.inbox_

    @property
    def delivery_policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            give_up_after_s=self.settings.delivery_give_up_after_s,
            max_backoff_s=self.settings.delivery_max_backoff_s,
        )


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
