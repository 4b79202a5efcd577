"""Image normalisation and content de-duplication."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps
from sqlalchemy import func, select

from storage.errors import ImageRejected, ImageTooManyPixels
from storage.images import DEFAULT_MAX_SIDE, normalise_image
from storage.schema import Image as ImageRow
from storage.types import ImageInput


def decode(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def test_exif_orientation_is_applied(quadrant_picture, picture_bytes):
    # Orientation 6 means "rotate 90° clockwise to display": the red top-left corner of the
    # stored pixels ends up top-right, and the 64x32 picture becomes 32x64.
    sideways = picture_bytes(quadrant_picture(), "JPEG", orientation=6)

    result = normalise_image(sideways)

    upright = decode(result.data)
    assert (result.width, result.height) == (32, 64) == upright.size
    assert close_to(upright.getpixel((28, 4)), (255, 0, 0))
    assert close_to(upright.getpixel((4, 4)), (0, 0, 255))
    assert not upright.getexif().get(0x0112)


def test_output_is_rgb_jpeg_with_sha256_of_its_bytes(quadrant_picture, picture_bytes):
    import hashlib

    result = normalise_image(picture_bytes(quadrant_picture().convert("L")))

    assert result.mime_type == "image/jpeg"
    assert decode(result.data).format == "JPEG"
    assert decode(result.data).mode == "RGB"
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()


def test_longest_side_is_capped_keeping_aspect_ratio(quadrant_picture, picture_bytes):
    large = picture_bytes(quadrant_picture(3000, 1500))

    default = normalise_image(large)
    small = normalise_image(large, max_side=200)

    assert (default.width, default.height) == (DEFAULT_MAX_SIDE, DEFAULT_MAX_SIDE // 2)
    assert (small.width, small.height) == (200, 100)


def test_small_images_are_not_enlarged(quadrant_picture, picture_bytes):
    result = normalise_image(picture_bytes(quadrant_picture(64, 32)))

    assert (result.width, result.height) == (64, 32)


def test_transparency_is_flattened_onto_white(picture_bytes):
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))

    result = normalise_image(picture_bytes(clear))

    assert close_to(decode(result.data).getpixel((10, 10)), (255, 255, 255), tolerance=2)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is text", b"%PDF-1.4 not a picture", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
    ids=["empty", "text", "pdf", "png-header-only"],
)
def test_non_images_are_rejected(data):
    with pytest.raises(ImageRejected):
        normalise_image(data)


def test_truncated_image_is_rejected(quadrant_picture, picture_bytes):
    whole = picture_bytes(quadrant_picture(400, 400), "JPEG")

    with pytest.raises(ImageRejected):
        normalise_image(whole[: len(whole) // 3])


def test_decompression_bomb_is_rejected_before_decoding():
    # 9000 x 9000 one-bit pixels: a few kilobytes of PNG, 81 megapixels once decoded.
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000

    with pytest.raises(ImageTooManyPixels, match="too large") as refused:
        normalise_image(buffer.getvalue())
    assert (refused.value.pixels, refused.value.exact) == (81_000_000, True)


def test_image_beyond_pillows_own_limit_is_refused_as_too_many_pixels_not_as_damaged():
    # 30000 x 30000: Pillow itself refuses it on opening, before its size reaches our check.
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, format="PNG")

    with pytest.raises(ImageTooManyPixels) as refused:
        normalise_image(buffer.getvalue())
    assert not refused.value.exact and refused.value.pixels == 2 * Image.MAX_IMAGE_PIXELS
    assert refused.value.pixels < 30000 * 30000


async def test_same_bytes_twice_are_stored_once(store, rows, solid_png):
    conversation = await store.active_conversation(1, 1)
    data = solid_png((10, 120, 200))

    first = await store.add_user_turn(conversation.id, "a", [ImageInput(data)])
    second = await store.add_user_turn(conversation.id, "b", [ImageInput(data), ImageInput(data)])

    assert [image.id for image in second.images] == [first.images[0].id] * 2
    async with rows() as session:
        assert await session.scalar(select(func.count()).select_from(ImageRow)) == 1


async def test_same_picture_in_other_container_or_exif_rotated_is_stored_once(
    store, rows, quadrant_picture, picture_bytes
):
    upright = quadrant_picture()
    # The same upright picture three ways: PNG, lossless BMP, and the pixels stored sideways
    # with an EXIF tag saying how to turn them back (orientation 8 undoes a 90° clockwise turn).
    sideways = upright.transpose(Image.Transpose.ROTATE_270)
    assert ImageOps.exif_transpose(
        decode(picture_bytes(sideways, "PNG", orientation=8))
    ).tobytes() == upright.tobytes()
    variants = [
        picture_bytes(upright, "PNG"),
        picture_bytes(upright, "BMP"),
        picture_bytes(sideways, "PNG", orientation=8),
    ]
    conversation = await store.active_conversation(1, 1)

    turn = await store.add_user_turn(conversation.id, "x", [ImageInput(v) for v in variants])

    assert len({image.sha256 for image in turn.images}) == 1
    assert (turn.images[0].width, turn.images[0].height) == (64, 32)
    async with rows() as session:
        assert await session.scalar(select(func.count()).select_from(ImageRow)) == 1


async def test_different_pictures_are_stored_separately_in_order(store, solid_png):
    conversation = await store.active_conversation(1, 1)
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]

    turn = await store.add_user_turn(
        conversation.id, "three", [ImageInput(solid_png(c)) for c in colours]
    )

    assert len({image.id for image in turn.images}) == 3
    for image, colour in zip(turn.images, colours):
        assert close_to(decode(image.data).getpixel((5, 5)), colour)


async def test_image_for_file_finds_a_stored_image_by_file_unique_id(store, solid_png):
    conversation = await store.active_conversation(1, 1)
    turn = await store.add_user_turn(
        conversation.id, "x", [ImageInput(solid_png((1, 2, 3)), file_unique_id="AgAD-abc")]
    )

    found = await store.image_for_file("AgAD-abc")

    assert found == turn.images[0]
    assert found.file_unique_id == "AgAD-abc"
    assert await store.image_for_file("AgAD-other") is None


async def test_rejected_image_writes_no_turn(store, solid_png):
    conversation = await store.active_conversation(1, 1)

    with pytest.raises(ImageRejected):
        await store.add_user_turn(
            conversation.id, "x", [ImageInput(solid_png((1, 2, 3))), ImageInput(b"junk")]
        )

    assert await store.history(conversation.id) == []
    assert (await store.stats()).images == 0


async def test_a_stored_image_handed_back_again_is_reused_not_copied(store, rows, quadrant_picture, picture_bytes):
    """Replying to an old photo reuses the stored bytes; re-encoding them must not make a second row."""
    conversation = await store.active_conversation(1, 1)
    photo = picture_bytes(quadrant_picture(), "PNG")
    first = await store.add_user_turn(conversation.id, "x", [ImageInput(photo, file_unique_id="AgAD-q")])
    stored = await store.image_for_file("AgAD-q")
    assert normalise_image(stored.data).sha256 != stored.sha256  # JPEG re-encoding is not idempotent

    again = await store.add_user_turn(conversation.id, "y", [ImageInput(stored.data, file_unique_id="AgAD-q")])

    assert again.images[0].id == first.images[0].id
    async with rows() as session:
        assert await session.scalar(select(func.count()).select_from(ImageRow)) == 1
