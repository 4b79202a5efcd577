"""The decoded pictures of recent conversations, kept for their next turn (bounded, newest kept).

A question's image is decoded once, when the store normalises it; the picture that decoding made is
what the model gets, then and on the conversation's later turns, instead of decoding the stored JPEG
again for every answer. `PictureCache` holds at most `capacity` pictures (DECODED_IMAGE_CACHE_SIZE;
0 turns it off), keyed by the sha256 of the stored bytes, and drops the least recently used first.
A picture not held (another process stored it, or it was dropped) is decoded from its stored bytes
by the caller and then held. Pictures are shared, never changed: whoever reads one must copy it
before changing it. Safe to use from the decode pool's threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from PIL import Image

DEFAULT_CAPACITY = 32  # an RGB picture of at most 1280x1280 takes ~5 MB


class PictureCache:
    """sha256 of stored image bytes -> their decoded RGB picture, least recently used dropped."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError("a picture cache can't hold fewer than 0 pictures")
        self.capacity = capacity
        self._pictures: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pictures)

    def get(self, sha256: str) -> Image.Image | None:
        with self._lock:
            picture = self._pictures.get(sha256)
            if picture is not None:
                self._pictures.move_to_end(sha256)
            return picture

    def put(self, sha256: str, picture: Image.Image) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._pictures[sha256] = picture
            self._pictures.move_to_end(sha256)
            while len(self._pictures) > self.capacity:
                self._pictures.popitem(last=False)

    def clear(self) -> None:
        """Forget every picture (a person's data was erased: no copy stays, not even in memory)."""
        with self._lock:
            self._pictures.clear()
