"""Typed errors the storage package raises."""


class StorageError(Exception):
    """Base class for everything the storage package raises on purpose."""


class ImageRejected(StorageError):
    """The bytes are not an image we can read (corrupt, unsupported format, or absurdly large)."""


class NotFound(StorageError):
    """A conversation or turn that the caller named does not exist."""


class DatabaseUnavailable(StorageError):
    """The database cannot take a write (or a read) right now: a lock held too long, a full disk,
    a server that does not answer. Nothing was written; the same call may work later."""
