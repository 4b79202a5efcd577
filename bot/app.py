"""The Application the bot runs as: built here, the same way for `idefics-bot run` and for the tests.

`build_application` wires the Bot API endpoint, rate limiting, concurrency, metrics, the webhook (if
any) and lifecycle hooks; `add_handlers` routes updates by filters to one small handler each;
`request_work` is the table of what each kind of stored request does when its turn comes (`bot.inbox`);
`on_error` is the one error handler.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from telegram import Update
from telegram.error import ChatMigrated, Forbidden, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.access import make_access_guard
from bot.addressing import ADDRESSED_TO_BOT, NAMES_THIS_BOT
from bot.answer_buttons import DetachedPressHandler, answer_button, regenerate_pressed, unknown_button
from bot.answer_keyboard import CALLBACK_PATTERN as ANSWER_PATTERN
from bot.apologies import apology_for
from bot.bot_api_http import AiohttpRequest
from bot.chat_migration import chat_migration_handler
from bot.commands.cancel import cancel_command
from bot.commands.caption import caption_task
from bot.commands.classify import classify_task
from bot.commands.describe import describe_task
from bot.commands.forget import CALLBACK_PATTERN as FORGET_PATTERN
from bot.commands.forget import forget_button, forget_command
from bot.commands.help import help_command
from bot.commands.mode import CALLBACK_PATTERN as MODE_PATTERN
from bot.commands.mode import mode_button, mode_command
from bot.commands.new import new_command, start_fresh
from bot.commands.retry import retry_command, retry_last_answer
from bot.commands.settings_menu import CALLBACK_PATTERN as SETTINGS_PATTERN
from bot.commands.settings_menu import settings_button, settings_command
from bot.commands.stats import stats_command
from bot.commands.story import story_task
from bot.delivery import send_reply
from bot.downloads import IMAGE_DOCUMENT
from bot.incoming import reply_target
from bot.intake import IN_ALBUM, ImageIntake
from bot.lifecycle import ModelServiceFactory, create_model_backend, make_post_init, post_shutdown, post_stop
from bot.logging_setup import install_token_redaction
from bot.messages import answer_question, on_image, on_other_document, on_text, on_unknown_command
from bot.metrics import BotMetrics
from bot.press_answers import answer_press
from bot.redelivery import SeenUpdates, make_redelivery_guard
from bot.request_codec import ALBUM, NEW, QUESTION, REGENERATE, RETRY, TASK
from bot.request_runner import Work
from bot.runtime import current_runtime
from bot.settings import Settings
from bot.tasks import Task, command_handler
from bot.telegram_client import AcknowledgementGate, LenientBot
from bot.webhook_receipts import ReceiptProcessor, ReceiptQueue, WebhookReceipts, install_receipts
from bot.webhooks import install_webhook, webhook_options

log = logging.getLogger(__name__)

# Concurrent updates let one person's long answer not hold up anyone else's; per-conversation order
# is kept by bot.conversation_queue, not by PTB.
CONCURRENT_UPDATES = 64
CONNECTION_POOL_SIZE = 256  # what ApplicationBuilder gives a bot it builds itself
RATE_LIMIT_RETRIES = 2
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]  # what the handlers below read
# Anything attached that the model cannot read: files, video, voice, stickers, but also places,
# contacts, polls and dice (photos and image documents are routed to on_image before this is tried).
NOT_AN_IMAGE = filters.ATTACHMENT
# The image tasks, asked for as a command (`/caption` replying to a photo) or as a photo's caption.
IMAGE_TASKS: dict[str, Task] = {
    "caption": caption_task,
    "classify": classify_task,
    "story": story_task,
    "describe": describe_task,
}


def build_application(
    settings: Settings, *, model_service_factory: ModelServiceFactory | None = None
) -> Application:
    """The bot's Application; its post_init loads the model and opens the store."""
    webhook = webhook_options(settings)  # its secret settled now, so that the logs can leave it out
    # Here, not only in the CLI: whoever builds the bot gets logs free of its token (and secret).
    secrets = [settings.telegram_bot_token.get_secret_value(), webhook.secret_token if webhook else ""]
    install_token_redaction(secrets)
    metrics = BotMetrics()
    acknowledgement = AcknowledgementGate()
    bot = LenientBot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=settings.bot_api_base_url,
        base_file_url=settings.bot_api_file_url,
        request=AiohttpRequest(connection_pool_size=CONNECTION_POOL_SIZE),
        get_updates_request=AiohttpRequest(),
        rate_limiter=AIORateLimiter(
            overall_max_rate=settings.telegram_max_messages_per_s, max_retries=RATE_LIMIT_RETRIES
        ),
        on_api_error=metrics.telegram_api_error,
        acknowledgement_gate=acknowledgement,
    )
    intake = ImageIntake(IMAGE_TASKS)
    post_init = make_post_init(
        settings, model_service_factory or create_model_backend, metrics, request_work(intake)
    )
    builder = (
        ApplicationBuilder().bot(bot).post_init(post_init).post_stop(post_stop).post_shutdown(post_shutdown)
    )
    seen = SeenUpdates()
    receipts = WebhookReceipts(on_refused=seen.forget) if webhook else None
    if receipts is None:
        builder = builder.concurrent_updates(CONCURRENT_UPDATES)
    else:  # a webhook update is confirmed (200) once handled, and refused (503) if it was not stored
        builder = builder.update_queue(ReceiptQueue(receipts)).concurrent_updates(
            ReceiptProcessor(CONCURRENT_UPDATES, receipts)
        )
    application = builder.build()
    install_webhook(application, webhook)
    install_receipts(application, receipts)
    acknowledgement.attach(application.update_queue)
    add_handlers(application, settings, intake, seen)
    return application


def request_work(intake: ImageIntake) -> dict[str, Work]:
    """What each kind of stored request does when its turn comes."""
    return {
        QUESTION: answer_question,
        TASK: intake.run_task,
        ALBUM: intake.answer_album,
        RETRY: retry_last_answer,
        NEW: start_fresh,
        REGENERATE: regenerate_pressed,
    }


def add_handlers(
    application: Application, settings: Settings, intake: ImageIntake, seen: SeenUpdates | None = None
) -> None:
    """Route every update type the bot understands to its handler."""
    new_messages = filters.UpdateType.MESSAGE  # edits of old messages are not re-answered
    application.add_handler(chat_migration_handler(), group=-3)  # before anything may stop it
    application.add_handler(TypeHandler(Update, make_redelivery_guard(seen)), group=-2)
    application.add_handler(TypeHandler(Update, make_access_guard(settings)), group=-1)
    commands = {
        ("start", "help"): help_command,
        ("new", "reset"): new_command,
        ("retry",): retry_command,
        ("cancel",): cancel_command,
        ("forget",): forget_command,
        ("stats",): stats_command,
        ("mode",): mode_command,
        ("settings",): settings_command,
        **{(name,): command_handler(name) for name in IMAGE_TASKS},
    }
    for names, callback in commands.items():
        application.add_handler(CommandHandler(list(names), callback, filters=new_messages))
    application.add_handler(DetachedPressHandler(unknown_button))  # first: the others need the message
    application.add_handler(CallbackQueryHandler(forget_button, pattern=FORGET_PATTERN))
    application.add_handler(CallbackQueryHandler(mode_button, pattern=MODE_PATTERN))
    application.add_handler(CallbackQueryHandler(settings_button, pattern=SETTINGS_PATTERN))
    application.add_handler(CallbackQueryHandler(answer_button, pattern=ANSWER_PATTERN))
    application.add_handler(CallbackQueryHandler(unknown_button))  # stale or forged: never left spinning
    images = filters.PHOTO | IMAGE_DOCUMENT
    # Every album item is collected (only one carries the caption that may address the bot).
    application.add_handler(MessageHandler(new_messages & IN_ALBUM & images, intake.on_album_item))
    application.add_handler(
        MessageHandler(new_messages & intake.caption_is_task & images, intake.on_task_caption)
    )
    addressed = new_messages & ADDRESSED_TO_BOT
    application.add_handler(MessageHandler(addressed & images, on_image))
    application.add_handler(MessageHandler(addressed & NOT_AN_IMAGE, on_other_document))
    application.add_handler(MessageHandler(addressed & filters.TEXT & ~filters.COMMAND, on_text))
    # In groups only commands meant for this bot: a bare /cmd may belong to another bot there.
    unknown_command = filters.COMMAND & (ADDRESSED_TO_BOT | NAMES_THIS_BOT)
    application.add_handler(MessageHandler(new_messages & unknown_command, on_unknown_command))
    application.add_error_handler(on_error)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log every unhandled error with its traceback; tell the person in the words `apology_for` picks."""
    error = context.error
    where = f"update {update.update_id}" if isinstance(update, Update) else "a job"
    if (runtime := current_runtime(context.application)) is not None:
        runtime.metrics.handler_error(error)
    if isinstance(error, Forbidden):  # blocked by the user, or removed from the group: nobody to tell
        log.info("can't write to the chat of %s: %s", where, error)
        return
    if isinstance(error, ChatMigrated):  # a basic group became a supergroup under our reply
        log.warning("the chat of %s moved to %s; the reply was not delivered", where, error.new_chat_id)
    elif isinstance(error, NetworkError):
        log.warning("network trouble while handling %s: %s", where, error)
    else:
        log.error("error while handling %s", where, exc_info=error)
    if not isinstance(update, Update):
        return
    if update.callback_query:  # the button must stop spinning, whatever went wrong
        await answer_press(update.callback_query, apology_for(error), show_alert=True)
    # A press on a message too old to be shown still names its chat; other updates bring a message.
    pressed = update.callback_query.message if update.callback_query else None
    where_asked = update.effective_message or pressed
    if where_asked is None:
        return
    target = reply_target(where_asked).quoting(None)
    if isinstance(error, ChatMigrated):
        target = replace(target, chat_id=error.new_chat_id)
    await send_reply(context.bot, target, apology_for(error))
