"""Untrusted image bytes: only the accepted decoders ever see them, and decoding is bounded."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storage.errors import ImageRejected
from storage.images import ACCEPTED_FORMATS, DecodePool, normalise_image, open_stored
from tests.untrusted_files import EPS_PAYLOAD, decompression_heavy_png


def test_the_fake_ghostscript_would_notice_pillow_running_gs(fake_ghostscript):
    """The control: Pillow left to itself does run `gs` on this payload."""
    with Image.open(io.BytesIO(EPS_PAYLOAD)) as opened:
        assert opened.format == "EPS"
        with pytest.raises(Exception):  # the fake writes no picture
            opened.load()
    assert fake_ghostscript.was_run()


def test_eps_named_like_a_photo_is_refused_and_never_reaches_ghostscript(fake_ghostscript):
    with pytest.raises(ImageRejected):
        normalise_image(EPS_PAYLOAD)
    assert not fake_ghostscript.was_run()


def test_stored_images_are_opened_as_what_the_store_writes_only(fake_ghostscript, solid_png):
    with pytest.raises(Exception):
        open_stored(EPS_PAYLOAD)
    with pytest.raises(Exception):
        open_stored(solid_png((1, 2, 3)))  # a PNG was never stored: normalised images are JPEG
    assert open_stored(normalise_image(solid_png((1, 2, 3))).data).mode == "RGB"
    assert not fake_ghostscript.was_run()


@pytest.mark.parametrize("fmt", ACCEPTED_FORMATS)
def test_every_accepted_format_is_read(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "red").save(buffer, format=fmt)
    assert (normalise_image(buffer.getvalue()).width, normalise_image(buffer.getvalue()).height) == (20, 10)


async def test_a_flood_of_heavy_images_is_decoded_a_few_at_a_time():
    pool = DecodePool(workers=2)
    heavy = [decompression_heavy_png(2500) for _ in range(6)]
    try:
        results = await pool.normalise(heavy)
    finally:
        pool.close()
    assert [(image.width, image.height) for image in results] == [(1280, 1280)] * 6
    assert pool.peak == 2
