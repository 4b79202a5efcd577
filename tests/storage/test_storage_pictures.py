"""The decoded-picture cache stays within its size, keeps what was used last, and forgets on demand."""

from __future__ import annotations

import pytest
from PIL import Image

from storage.pictures import PictureCache


def picture(colour: str) -> Image.Image:
    return Image.new("RGB", (4, 4), colour)


def test_the_least_recently_used_picture_is_dropped_first():
    cache = PictureCache(capacity=2)
    red, green, blue = picture("red"), picture("green"), picture("blue")
    cache.put("red", red)
    cache.put("green", green)
    assert cache.get("red") is red  # now the most recently used
    cache.put("blue", blue)
    assert len(cache) == 2
    assert cache.get("green") is None
    assert cache.get("red") is red and cache.get("blue") is blue


def test_a_cache_of_size_zero_holds_nothing_and_clear_forgets_everything():
    off = PictureCache(capacity=0)
    off.put("red", picture("red"))
    assert off.get("red") is None
    cache = PictureCache(capacity=4)
    cache.put("red", picture("red"))
    cache.clear()
    assert cache.get("red") is None and len(cache) == 0
    with pytest.raises(ValueError):
        PictureCache(capacity=-1)
