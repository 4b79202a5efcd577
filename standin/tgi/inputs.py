"""How TGI's router cuts `inputs` into text and image chunks for a multimodal model (validation.rs).

Every ``![](...)`` in `inputs` is an image: ``data:<mime>;base64,<data>`` is decoded, and an
``http(s)`` URL is fetched by the real server. The stand-in never reaches the network: it records
the URL in `fetch_attempts` (so a test can prove a client never made one) and refuses the request the
way TGI refuses an image it could not fetch. The router counts each image as one ``<image>`` token.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Union

from PIL import Image, UnidentifiedImageError

from standin.tgi.validation import TgiValidationError

MARKDOWN_IMAGE = re.compile(r"!\[\]\([^\)]*\)")
ROUTER_IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class ImageChunk:
    image: Image.Image
    mime_type: str
    size_bytes: int


Chunk = Union[str, ImageChunk]


def split_inputs(inputs: str, fetch_attempts: list[str]) -> tuple[list[Chunk], str]:
    """The chunks the model server gets, and the text the router tokenizes to count input tokens."""
    chunks: list[Chunk] = []
    counted = ""
    start = 0
    for match in MARKDOWN_IMAGE.finditer(inputs):
        if match.start() != start:
            chunks.append(inputs[start : match.start()])
            counted += inputs[start : match.start()]
        chunks.append(_image(match.group(0), fetch_attempts))
        counted += ROUTER_IMAGE_TOKEN
        start = match.end()
    if start != len(inputs):
        chunks.append(inputs[start:])
        counted += inputs[start:]
    return chunks, counted


def _image(markdown: str, fetch_attempts: list[str]) -> ImageChunk:
    target = markdown[len("![](") : -1]
    if target.startswith(("http://", "https://")):
        fetch_attempts.append(target)
        raise TgiValidationError(
            f"Could not fetch image: {target} (this stand-in never fetches; a real server would have)"
        )
    if not target.startswith("data:"):
        raise TgiValidationError(f"invalid image content: {markdown}")
    content = target[len("data:") :]
    pieces = content.split(";")
    if len(pieces) != 2 or not pieces[1].startswith("base64,"):
        raise TgiValidationError(f"invalid image content: {content}")
    try:
        data = base64.b64decode(pieces[1][len("base64,") :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise TgiValidationError(f"base64 encoding is invalid: {error}") from error
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise TgiValidationError(f"invalid image: {error}") from error
    return ImageChunk(image=image, mime_type=pieces[0], size_bytes=len(data))
