"""Typed errors the storage package raises."""


class StorageError(Exception):
    """Base class for everything the storage package raises on purpose."""


class ImageRejected(StorageError):
    """The bytes are not an image we can read (corrupt, unsupported format, or absurdly large)."""


class ImageTooManyPixels(ImageRejected):
    """An image whose pixels, once decoded, would exceed `limit` (a decompression bomb, or a huge scan).

    `pixels` is the image's count, or, where Pillow refused the file before its size was known, the
    count it is known to exceed (`exact` false)."""

    def __init__(self, limit: int, pixels: int, *, exact: bool = True) -> None:
        super().__init__(f"image is too large ({'' if exact else 'over '}{pixels} pixels; the limit is {limit})")
        self.limit, self.pixels, self.exact = limit, pixels, exact


class NotFound(StorageError):
    """A conversation or turn that the caller named does not exist."""


class DatabaseUnavailable(StorageError):
    """The database cannot take a write (or a read) right now: a lock held too long, a full disk,
    a server that does not answer. Nothing was written; the same call may work later."""
