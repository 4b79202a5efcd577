"""Fetching a photo or image document from Telegram, within our size limit and Telegram's 20 MB one.

An image the store already holds (same Telegram `file_unique_id`) is taken from the store instead, so a
reply to an old photo works even after Telegram stopped serving the file, and costs no download.
A file is an image by its MIME type, or by its name when the type is missing or generic.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass

from telegram import Bot, Document, File, Message, PhotoSize
from telegram.error import TelegramError
from telegram.ext import filters

from bot.errors import ImageDownloadFailed, ImageTooLarge
from storage.store import Store
from storage.types import ImageInput

log = logging.getLogger(__name__)

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
UNTYPED = "application/octet-stream"


@dataclass(frozen=True)
class ImageSource:
    """Where an image of a message lives on Telegram's side."""

    file_id: str
    file_unique_id: str
    file_size: int | None


def image_source(message: Message) -> ImageSource | None:
    """The message's image: the largest PhotoSize of a photo, or an image document; None otherwise."""
    if message.photo:
        largest: PhotoSize = max(
            message.photo, key=lambda size: (size.width * size.height, size.file_size or 0)
        )
        return ImageSource(largest.file_id, largest.file_unique_id, largest.file_size)
    document: Document | None = message.document
    if document and is_image_document(document):
        return ImageSource(document.file_id, document.file_unique_id, document.file_size)
    return None


def is_image_document(document: Document) -> bool:
    """An image by its MIME type, or by its file name when the type is missing or only says "bytes"."""
    mime_type = document.mime_type or ""
    if mime_type.startswith("image/"):
        return True
    if mime_type not in ("", UNTYPED) or not document.file_name:
        return False
    guessed, _ = mimetypes.guess_type(document.file_name)
    return (guessed or "").startswith("image/")


class _ImageDocument(filters.MessageFilter):
    """PTB filter form of `is_image_document`, for routing in `bot.app`."""

    __slots__ = ()

    def filter(self, message: Message) -> bool:
        return message.document is not None and is_image_document(message.document)


IMAGE_DOCUMENT = _ImageDocument(name="IMAGE_DOCUMENT")


async def download_image(bot: Bot, source: ImageSource, max_bytes: int) -> ImageInput:
    """The image's bytes; raises ImageTooLarge or ImageDownloadFailed."""
    limit = min(max_bytes, TELEGRAM_DOWNLOAD_LIMIT)
    if source.file_size is not None and source.file_size > limit:
        raise ImageTooLarge(source.file_size, limit)
    try:
        file = _with_download_url(bot, await bot.get_file(source.file_id))
        if file.file_size is not None and file.file_size > limit:
            raise ImageTooLarge(file.file_size, limit)
        if not file.file_path:  # nothing to download from (PTB would raise RuntimeError)
            raise ImageDownloadFailed("the Bot API gave no file_path")
        data = bytes(await file.download_as_bytearray())
    except TelegramError as error:
        log.warning("could not download file %s: %s", source.file_unique_id, error)
        raise ImageDownloadFailed(str(error)) from error
    if len(data) > limit:
        raise ImageTooLarge(len(data), limit)
    return ImageInput(data=data, file_unique_id=source.file_unique_id)


def _with_download_url(bot: Bot, file: File) -> File:
    """Some Bot API servers give `file_path` as a whole URL; PTB puts its file URL in front of any
    path, so such a file is downloaded from the URL the server gave."""
    prefix = f"{bot.base_file_url}/"
    given = (file.file_path or "").removeprefix(prefix)
    if given == file.file_path or not given.startswith(("http://", "https://")):
        return file
    served = File(file.file_id, file.file_unique_id, file_size=file.file_size, file_path=given)
    served.set_bot(bot)
    return served


async def fetch_image(bot: Bot, store: Store, source: ImageSource, max_bytes: int) -> ImageInput:
    """The image from the store if we have seen this file before, otherwise downloaded from Telegram."""
    stored = await store.image_for_file(source.file_unique_id)
    if stored is not None:
        return ImageInput(data=stored.data, file_unique_id=source.file_unique_id)
    return await download_image(bot, source, max_bytes)
