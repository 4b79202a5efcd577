"""Turns whatever image bytes a user sent into the one form the store keeps and hashes.

Normalising first (EXIF rotation applied, RGB, longest side capped, JPEG q=90, metadata dropped)
means the model always sees upright pictures of a bounded size, and the same picture sent twice,
whatever its original container, is stored once under the sha256 of the normalised bytes.

The bytes are untrusted. Pillow is only ever allowed the decoders of `ACCEPTED_FORMATS` (passed to
`Image.open`, which checks them before decoding anything): an EPS or PDF named holiday.jpg is
refused as unreadable instead of being handed to Ghostscript. Stored images are opened as
`STORED_FORMATS` only. Decoding runs in a `DecodePool` of a few threads, so a flood of images that
are small to send but huge to decode waits its turn instead of taking all the memory at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from storage.errors import ImageRejected, ImageTooManyPixels

T = TypeVar("T")

DEFAULT_MAX_SIDE = 1280
# Far above any photo Telegram delivers (it caps photos at 2560 px), far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000
JPEG_QUALITY = 90
MIME_TYPE = "image/jpeg"
# The decoders a person's bytes may reach: what phones and browsers save. Nothing that runs an
# outside program (EPS runs Ghostscript) or parses documents.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
STORED_FORMATS = ("JPEG",)  # what `normalise_image` writes
DEFAULT_DECODE_WORKERS = 2


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    mime_type: str = MIME_TYPE
    # The RGB picture the bytes were encoded from: what the model is given for this question, so
    # the image is decoded once (see storage.pictures).
    picture: Image.Image | None = field(default=None, compare=False, repr=False)


def normalise_image(
    data: bytes, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NormalisedImage:
    """Decode, upright, flatten to RGB, shrink to `max_side` and re-encode; CPU-bound, so callers
    on the event loop should run it in a thread. Raises ImageRejected for anything unreadable."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageTooManyPixels(max_pixels, width * height)
            picture = _upright_rgb(opened)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own, far larger, limit: refused on opening
        raise ImageTooManyPixels(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0), exact=False) from error
    except UnidentifiedImageError as error:
        raise ImageRejected(str(error)) from error
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt files
        raise ImageRejected(f"unreadable image: {error}") from error

    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    encoded = buffer.getvalue()
    return NormalisedImage(
        data=encoded,
        sha256=hashlib.sha256(encoded).hexdigest(),
        width=picture.width,
        height=picture.height,
        picture=picture,
    )


def _upright_rgb(opened: Image.Image) -> Image.Image:
    """The first frame, rotated as its EXIF says, with transparency flattened onto white."""
    upright = ImageOps.exif_transpose(opened)
    if upright is None:  # exif_transpose returns None only with in_place=True
        upright = opened
    upright.load()
    if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
        rgba = upright.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return upright.convert("RGB")


def open_stored(data: bytes) -> Image.Image:
    """An image the store wrote, decoded to RGB (as the model wants it)."""
    with Image.open(io.BytesIO(data), formats=STORED_FORMATS) as opened:
        return opened.convert("RGB")


class DecodePool:
    """A few threads that do all image decoding, so that concurrent decodes (and the memory they
    take) are bounded however many images arrive at once; `peak` tells how many ran together."""

    def __init__(self, workers: int = DEFAULT_DECODE_WORKERS) -> None:
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.workers = workers
        self.peak = 0
        self._running = 0
        self._count_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image-decode")

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on one of the pool's threads; waits for a free one."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(self._counted, work, *args)
        )

    async def normalise(
        self, images: Sequence[bytes], max_side: int = DEFAULT_MAX_SIDE
    ) -> list[NormalisedImage]:
        """Each image normalised on a pool thread (raises ImageRejected for the first bad one)."""
        normalise = functools.partial(normalise_image, max_side=max_side)
        return list(await asyncio.gather(*(self.run(normalise, data) for data in images)))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _counted(self, work: Callable[..., T], *args: Any) -> T:
        with self._count_lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        try:
            return work(*args)
        finally:
            with self._count_lock:
                self._running -= 1
