"""Typed errors of the bot package; each maps to one short, specific apology in `bot.texts`."""

from __future__ import annotations


class BotError(Exception):
    """Base class for everything the bot package raises on purpose."""


class ImageTooLarge(BotError):
    """The image is bigger than MAX_IMAGE_BYTES or Telegram's 20 MB download limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"image of {size} bytes is over the {limit} byte limit")
        self.size = size
        self.limit = limit


class ImageDownloadFailed(BotError):
    """Telegram would not give us the file (expired, network trouble, Bot API error)."""


class NotReady(BotError):
    """An update arrived before post_init finished, or after shutdown began."""


class ListenFailed(BotError):
    """A server of the bot's own (webhooks, health and metrics) could not listen where it was told."""
