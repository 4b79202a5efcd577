"""Preambles ("modes"): the instruction and few-shot example turns that come before a conversation.

A mode is a TOML file: `name`, `description`, `text` (the instruction) and `[[examples]]` turns, each with
a `role` ("user" or "assistant"), optional `images` (paths relative to the file) and `text`. Three modes
ship in `model/preambles/`; an admin folder (setting MODES_DIR) can add more or override them by name.
Example images get a stable key (the sha256 of the file) so the service can reuse their vision features.
They are opened with the decoders of `PREAMBLE_IMAGE_FORMATS` only (a mode file is an admin's, but its
images still never reach a decoder that runs an outside program, such as EPS's Ghostscript).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from PIL import Image

from model.errors import PreambleError
from model.types import ImagePart, Part, Preamble, TextPart, Turn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

NO_PREAMBLE = "none"
ROLES = ("user", "assistant")
PREAMBLE_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


def builtin_modes_dir() -> Path:
    """The folder of the modes that ship with the bot."""
    return Path(__file__).parent / "preambles"


def load_preamble_file(path: Path) -> Preamble:
    """Read one mode file; raise `PreambleError` saying what is wrong with it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PreambleError(f"Cannot read the preamble file {str(path)!r}: {error.strerror}.") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PreambleError(f"The preamble file {str(path)!r} is not valid TOML: {error}.") from error
    name = _string(data, "name", path, required=True)
    text = _string(data, "text", path, required=True)
    examples = data.get("examples", [])
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        raise PreambleError(f"In {str(path)!r}, `examples` must be a list of [[examples]] tables.")
    turns = tuple(_example_turn(example, index, path) for index, example in enumerate(examples, 1))
    return Preamble(
        name=name, text=text.strip(), examples=turns, description=_string(data, "description", path)
    )


def load_modes(extra_dir: Path | None = None) -> dict[str, Preamble]:
    """The built-in modes plus those in `extra_dir` (same name overrides); broken files are skipped."""
    modes = _load_folder(builtin_modes_dir())
    if extra_dir is not None:
        if Path(extra_dir).is_dir():
            modes.update(_load_folder(Path(extra_dir)))
        else:
            logger.warning("Modes folder %s does not exist; using the built-in modes only", extra_dir)
    return modes


def resolve_preamble(spec: str, modes: dict[str, Preamble]) -> Preamble | None:
    """`spec` is "none" (no preamble), a mode name, or a path to a .toml mode file."""
    spec = spec.strip()
    if spec.lower() == NO_PREAMBLE:
        return None
    if spec in modes:
        return modes[spec]
    if spec.endswith(".toml") or "/" in spec or "\\" in spec:
        return load_preamble_file(Path(spec).expanduser())
    known = ", ".join(sorted(modes)) or "(none loaded)"
    raise PreambleError(
        f"Unknown preamble {spec!r}. Use `none` for no preamble, one of the modes ({known}), "
        "or the path of a .toml mode file."
    )


def _load_folder(folder: Path) -> dict[str, Preamble]:
    modes: dict[str, Preamble] = {}
    for path in sorted(folder.glob("*.toml")):
        try:
            preamble = load_preamble_file(path)
        except PreambleError as error:
            logger.warning("Skipping mode file %s: %s", path, error)
            continue
        modes[preamble.name] = preamble
    return modes


def _example_turn(example: dict, index: int, path: Path) -> Turn:
    where = f"example {index} of {str(path)!r}"
    role = example.get("role")
    if role not in ROLES:
        raise PreambleError(f"In {where}, `role` must be \"user\" or \"assistant\", not {role!r}.")
    image_paths = example.get("images", [])
    if not isinstance(image_paths, list) or not all(isinstance(p, str) for p in image_paths):
        raise PreambleError(f"In {where}, `images` must be a list of paths relative to the file.")
    text = example.get("text", "")
    if not isinstance(text, str) or not (text.strip() or image_paths):
        raise PreambleError(f"In {where}, give a `text` string (or at least one image).")
    parts: list[Part] = [_load_image(path.parent, relative, where) for relative in image_paths]
    if text.strip():
        parts.append(TextPart(text.strip()))
    return Turn(role=role, parts=tuple(parts))


def _load_image(folder: Path, relative: str, where: str) -> ImagePart:
    image_path = (folder / relative).resolve()
    if Path(relative).is_absolute() or not image_path.is_relative_to(folder.resolve()):
        raise PreambleError(f"In {where}, image {relative!r} must be a path inside the mode's folder.")
    try:
        data = image_path.read_bytes()
        with Image.open(image_path, formats=PREAMBLE_IMAGE_FORMATS) as opened:
            image = opened.convert("RGB")
    except OSError as error:
        raise PreambleError(f"In {where}, image {relative!r} cannot be read: {error}.") from error
    return ImagePart(image=image, key="preamble-" + hashlib.sha256(data).hexdigest())


def _string(data: dict, key: str, path: Path, required: bool = False) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise PreambleError(f"The preamble file {str(path)!r} needs a non-empty string `{key}`.")
    return value
