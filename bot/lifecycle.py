"""What happens when the bot starts and stops: the store, the model backend, commands and housekeeping.

`post_init` builds the runtime before updates are received (the health endpoint first, when
METRICS_PORT asks for one; the model backend is made by `model.backends.create_backend` from the
settings, in a worker thread, so the event loop keeps answering) and schedules the inbox's sweep, whose
first run, at start, takes up what the last run left; `post_stop` cancels in-flight answers while the
bot can still tell people and record it, and gives back the inbox's claims; `post_shutdown` closes the
model backend, the store and the health endpoint. `serving` runs the whole cycle inside an event loop
someone else owns (the try-out, the tests), polling or by webhook as the settings say.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telegram import BotCommand
from telegram.error import TelegramError
from telegram.ext import Application, ContextTypes

from bot import texts
from bot.health_server import start_health_server, stop_health_server
from bot.metrics import BotMetrics
from bot.inbox import Inbox, sweep_inbox
from bot.request_runner import Work
from bot.runtime import BotRuntime, current_runtime, install_runtime, remove_runtime, runtime_of
from bot.settings import Settings
from bot.webhook_receipts import receipts_of
from bot.webhooks import check_port_is_free, start_receiving, webhook_of
from model.backend import ModelBackend
from storage.images import DecodePool
from storage.pictures import PictureCache
from storage.store import Store

if TYPE_CHECKING:  # imported when used: it brings the TGI client (huggingface_hub) with it
    from model.backends import BackendOptions

log = logging.getLogger(__name__)

ModelServiceFactory = Callable[[Settings], Awaitable[ModelBackend]]
PURGE_EVERY = timedelta(hours=6)
PURGE_FIRST_AFTER = timedelta(minutes=1)
SWEEP_FIRST_AFTER_S = 0.1  # at once (APScheduler skips a first run "now", so not 0)


def backend_options(settings: Settings) -> BackendOptions:
    """What `create_backend` needs from the settings (MODEL_BACKEND, TGI_URL, MODEL_ID, …)."""
    from model.backends import BackendOptions

    return BackendOptions(
        kind=settings.model_backend,
        model_id=settings.model_id,
        dtype=settings.model_dtype,
        quantization=settings.model_quantization,
        max_batch_size=settings.max_batch_size,
        max_images=settings.max_images_in_prompt,
        prefix_cache_bytes=settings.prefix_cache_bytes,
        prefill_chunk_tokens=settings.prefill_chunk_tokens,
        cpu_packed_linears=settings.cpu_packed_linears,
        tgi_urls=settings.tgi_urls,
    )


async def create_model_backend(settings: Settings) -> ModelBackend:
    """The model backend the settings ask for, loaded but not started (the default factory)."""
    from model.backends import create_backend

    return await create_backend(backend_options(settings))


def make_post_init(
    settings: Settings,
    model_service_factory: ModelServiceFactory,
    metrics: BotMetrics,
    work: Mapping[str, Work],
) -> Callable[[Application], Awaitable[None]]:
    """The post_init hook for these settings and request kinds (PTB hooks only receive the application)."""

    async def post_init(application: Application) -> None:
        """Open the store, load and start the model, register commands, schedule the inbox's sweep
        and the retention purge."""
        from model.preamble import load_modes, resolve_preamble

        if (webhook := webhook_of(application)) is not None:
            check_port_is_free(webhook)
        if settings.metrics_port is not None:  # first: "starting" is an answer too
            await start_health_server(application, metrics, settings.metrics_listen, settings.metrics_port)
        store = Store(
            settings.database_url,
            lock_timeout_s=settings.database_lock_timeout_s,
            decode_pool=DecodePool(settings.image_decode_workers),
            pictures=PictureCache(settings.decoded_image_cache_size),
        )
        await store.start()
        try:
            modes = load_modes(settings.modes_dir)
            default_preamble = resolve_preamble(settings.prompt_preamble, modes)
            model = await model_service_factory(settings)
            await model.start()
        except BaseException:
            await store.stop()
            raise
        runtime = BotRuntime(
            settings=settings,
            store=store,
            model=model,
            modes=modes,
            default_preamble=default_preamble,
            metrics=metrics,
        )
        metrics.watch(runtime.answers, model)
        runtime.inbox_ = Inbox(runtime, application.bot, work, receipts=receipts_of(application))
        install_runtime(application, runtime)
        await register_commands(application)
        interval = runtime.inbox.sweep_interval_s
        application.job_queue.run_repeating(
            sweep_inbox, interval=interval, first=SWEEP_FIRST_AFTER_S, name="inbox-sweep"
        )
        if settings.conversation_retention_days > 0:
            application.job_queue.run_repeating(
                purge_idle_conversations,
                interval=PURGE_EVERY,
                first=PURGE_FIRST_AFTER,
                name="retention-purge",
            )
        log.info("bot @%s is ready", application.bot.username)

    return post_init


async def register_commands(application: Application) -> None:
    """Offer the commands in Telegram's menu; a Bot API server that refuses only loses the menu."""
    commands = [BotCommand(name, description) for name, description in texts.COMMAND_DESCRIPTIONS.items()]
    try:
        await application.bot.set_my_commands(commands)
    except TelegramError as error:
        log.warning("could not register the command menu (setMyCommands): %s", error)


async def post_stop(application: Application) -> None:
    """Cancel every answer still being written, so each is recorded as cancelled and its reader told."""
    runtime = current_runtime(application)
    if runtime is not None:
        cancelled = await runtime.answers.shutdown()
        if cancelled:
            log.info("cancelled %d in-flight answers; they are taken up again at the next start", cancelled)
        await runtime.inbox.close()


async def post_shutdown(application: Application) -> None:
    """Stop the model backend and close the store (after any answers were cancelled), then the endpoint."""
    runtime = remove_runtime(application)
    if runtime is not None:
        await runtime.answers.shutdown()  # normally done in post_stop; run_polling skips it if start failed
        await runtime.model.stop()
        await runtime.store.stop()
        runtime.store.decode_pool.close()
        log.info("bot stopped")
    await stop_health_server(application)


async def purge_idle_conversations(context: ContextTypes.DEFAULT_TYPE) -> None:
    """JobQueue job: delete conversations idle past CONVERSATION_RETENTION_DAYS."""
    runtime = runtime_of(context)
    removed = await runtime.store.purge_idle(timedelta(days=runtime.settings.conversation_retention_days))
    if removed:
        log.info("retention: removed %d idle conversations", removed)


@contextlib.asynccontextmanager
async def serving(
    application: Application, allowed_updates: Sequence[str] | None = None, **polling: Any
) -> AsyncIterator[Application]:
    """Run `application` inside the running event loop, hooks included, in the order `run_polling`
    uses (which owns its loop, so it can't share one with a Bot API stand-in, as `idefics-bot try`
    and the tests need); by webhook when TELEGRAM_WEBHOOK_URL is set, else polling, where `polling`
    goes to `Updater.start_polling`."""
    await application.initialize()
    try:
        await application.post_init(application)
        await start_receiving(application, allowed_updates, **polling)
        await application.start()
        try:
            yield application
        finally:
            if application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
                await application.post_stop(application)
    finally:
        await application.shutdown()
        await application.post_shutdown(application)
