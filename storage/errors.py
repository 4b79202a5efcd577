"""Typed errors the storage package raises."""


class StorageError(Exception):
    """Base class for everything the storage package raises on purpose."""


class ImageRejected(StorageError):
    """The bytes are not an image we can read (corrupt, unsupported format, or absurdly large)."""


class NotFound(StorageError):
    """A conversation or turn that the caller named does not exist."""
