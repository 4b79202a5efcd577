"""A built prompt as the `inputs` text of a text-generation-inference request.

TGI takes one string: text, with each image inline as ``![](data:<mime>;base64,...)`` (an ``http(s)``
URL there would be fetched by the server, so images only ever go as data URIs, and PromptBuilder keeps
user text from spelling ``![](``). The server cuts the string at its images and gives each text chunk
to the IDEFICS processor, which strips spaces from its ends, exactly as it strips each of our string
items, so concatenating the items gives the server the same text the local backend tokenizes.

Images go as PNG (lossless) already resized to the model's square input size with the processor's own
resampling: the server's resize is then a no-op, so it sees the very pixels the local backend would,
and a request stays far below TGI's 2 MB payload limit (about 100 KB per 224x224 image).
A text chunk that the server's processor would itself take for an image (a bare URL, or text starting
with ``data:``) gets a WORD JOINER in front.
"""

from __future__ import annotations

import base64
import io

from PIL import Image
from transformers.image_transforms import convert_to_rgb
from transformers.models.idefics.processing_idefics import is_url

from model.prompt import WORD_JOINER
from model.types import BuiltPrompt

IMAGE_MIME_TYPE = "image/png"


def tgi_inputs(prompt: BuiltPrompt, image_side: int) -> str:
    """`prompt.items` as TGI `inputs`; images resized to `image_side` squares and inlined."""
    pieces: list[str] = []
    text_chunk: list[str] = []
    for item in prompt.items:
        if isinstance(item, str):
            text_chunk.append(item.strip(" "))
            continue
        pieces.append(_safe_chunk("".join(text_chunk)))
        text_chunk = []
        pieces.append(image_markdown(item, image_side))
    pieces.append(_safe_chunk("".join(text_chunk)))
    return "".join(pieces)


def image_markdown(image: Image.Image, side: int) -> str:
    return f"![](data:{IMAGE_MIME_TYPE};base64,{base64.b64encode(encode_image(image, side)).decode()})"


def encode_image(image: Image.Image, side: int) -> bytes:
    """PNG bytes of `image` in RGB (transparency on white) resized to `side` x `side` (bicubic, as IDEFICS)."""
    rgb = Image.fromarray(convert_to_rgb(image, return_numpy=True))  # as the image processor does
    if rgb.size != (side, side):
        rgb = rgb.resize((side, side), resample=Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return buffer.getvalue()


def _safe_chunk(chunk: str) -> str:
    stripped = chunk.strip(" ")
    if stripped and (is_url(stripped) or stripped.startswith("data:")):
        return WORD_JOINER + chunk
    return chunk
