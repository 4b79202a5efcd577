"""The one map from a known error to the sentence a person reads; the wording itself is in `bot.texts`.

Every path that answers a person uses it: storing a question (an image too large, lost on the way, or
unreadable), answering and classifying (the model's errors), the database being unavailable, and the
application's error handler (the bot not started yet, a group upgraded under a reply, anything
unexpected).
"""

from __future__ import annotations

from telegram.error import ChatMigrated

from bot import texts
from bot.errors import ImageDownloadFailed, ImageTooLarge, NotReady
from model.errors import ModelBusy, ModelError, PromptTooLong, ServiceStopped
from storage.errors import DatabaseUnavailable, ImageRejected, ImageTooManyPixels

# The first class an error is an instance of wins: subclasses before their bases.
_APOLOGIES: tuple[tuple[type[BaseException], str], ...] = (
    (ImageDownloadFailed, texts.IMAGE_DOWNLOAD_FAILED),
    (ImageRejected, texts.IMAGE_UNREADABLE),
    (PromptTooLong, texts.PROMPT_TOO_LONG),
    (ServiceStopped, texts.NOT_READY),
    (ModelBusy, texts.MODEL_BUSY),  # a GenerationFailed: before ModelError
    (NotReady, texts.NOT_READY),
    (ModelError, texts.GENERATION_FAILED),  # GenerationFailed, or a prompt that could not be made safe
    (ChatMigrated, texts.CHAT_UPGRADED),
    (DatabaseUnavailable, texts.CANNOT_SAVE_NOW),
)


def apology_for(error: BaseException) -> str:
    """What to tell the person whose request ended in `error`; a general apology for unknown errors."""
    if isinstance(error, ImageTooLarge):
        return texts.IMAGE_TOO_LARGE.format(size_mb=error.size / 2**20, limit_mb=error.limit / 2**20)
    if isinstance(error, ImageTooManyPixels):
        megapixels = f"{'' if error.exact else 'over '}{error.pixels / 1e6:.0f}"
        return texts.IMAGE_TOO_MANY_PIXELS.format(megapixels=megapixels, limit=error.limit / 1e6)
    return next((text for kind, text in _APOLOGIES if isinstance(error, kind)), texts.UNEXPECTED_ERROR)
