"""Turns whatever image bytes a user sent into the one form the store keeps and hashes.

Normalising first (EXIF rotation applied, RGB, longest side capped, JPEG q=90, metadata dropped)
means the model always sees upright pictures of a bounded size, and the same picture sent twice,
whatever its original container, is stored once under the sha256 of the normalised bytes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from storage.errors import ImageRejected

DEFAULT_MAX_SIDE = 1280
# Far above any photo Telegram delivers (it caps photos at 2560 px), far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000
JPEG_QUALITY = 90
MIME_TYPE = "image/jpeg"


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    mime_type: str = MIME_TYPE


def normalise_image(
    data: bytes, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NormalisedImage:
    """Decode, upright, flatten to RGB, shrink to `max_side` and re-encode; CPU-bound, so callers
    on the event loop should run it in a thread. Raises ImageRejected for anything unreadable."""
    if max_side < 1:
        raise ValueError("max_side must be positive")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageRejected(f"image is too large ({width}x{height} pixels)")
            picture = _upright_rgb(opened)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
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
