"""Files Telegram would host: what users send, what the bot uploads, and their download paths.

Photos arrive as several PhotoSizes, largest last, made by really downscaling the image, so a bot that
takes `photo[0]` gets a 90-pixel thumbnail just as it would from Telegram. Tests can make a file's
download fail or report it as larger than the 20 MB getFile limit.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from dataclasses import dataclass
from typing import Any

from PIL import Image

THUMBNAIL_SIDES = (90, 320, 800)
LARGEST_PHOTO_SIDE = 1280
GET_FILE_LIMIT = 20 * 1024 * 1024


@dataclass
class StoredFile:
    """One hosted file. `reported_size` and `download_fails` are there for tests to change."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    reported_size: int
    download_fails: bool = False

    def wire(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_unique_id": self.file_unique_id,
                "file_size": self.reported_size}


class FileStore:
    """All hosted files, by file_id and by download path."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._numbers = itertools.count(1)
        self._photo_sets: dict[str, list[dict[str, Any]]] = {}

    def add(self, data: bytes, *, folder: str = "documents", extension: str = "",
            reported_size: int | None = None) -> StoredFile:
        number = next(self._numbers)
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredFile(
            file_id=f"BQACAgIAAxkB{folder[:3]}{number:05d}{digest[:20]}",
            file_unique_id=f"AgAD{digest[:12]}",
            file_path=f"{folder}/file_{number}{extension}",
            data=data,
            reported_size=len(data) if reported_size is None else reported_size,
        )
        self._by_id[stored.file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def by_id(self, file_id: str) -> StoredFile | None:
        return self._by_id.get(file_id)

    def by_path(self, file_path: str) -> StoredFile | None:
        return self._by_path.get(file_path)

    def add_photo(self, image_bytes: bytes, *, reported_size: int | None = None
                  ) -> list[dict[str, Any]]:
        """PhotoSize dicts, smallest first; the largest keeps the original bytes when Telegram
        would (a JPEG no larger than 1280 px), otherwise it is re-encoded as Telegram does."""
        image = Image.open(io.BytesIO(image_bytes))
        image.load()
        sizes = []
        for side in THUMBNAIL_SIDES:
            if max(image.size) > side:
                sizes.append(self._photo_size(_jpeg_fit(image, side)))
        if image.format == "JPEG" and max(image.size) <= LARGEST_PHOTO_SIDE:
            largest = image_bytes
        else:
            largest = _jpeg_fit(image, LARGEST_PHOTO_SIDE)
        sizes.append(self._photo_size(largest, reported_size=reported_size))
        for size in sizes:
            self._photo_sets[size["file_id"]] = sizes
        return sizes

    def photo_sizes(self, file_id: str) -> list[dict[str, Any]]:
        """All sizes of the photo that has a size with this file_id (resending by file_id)."""
        return self._photo_sets.get(file_id, [])

    def _photo_size(self, jpeg: bytes, *, reported_size: int | None = None) -> dict[str, Any]:
        stored = self.add(jpeg, folder="photos", extension=".jpg", reported_size=reported_size)
        width, height = Image.open(io.BytesIO(jpeg)).size
        return {**stored.wire(), "width": width, "height": height}


def _jpeg_fit(image: Image.Image, side: int) -> bytes:
    copy = image.convert("RGB")
    copy.thumbnail((side, side))
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=87)
    return buffer.getvalue()
