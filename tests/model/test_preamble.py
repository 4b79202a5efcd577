"""Modes (preambles): the shipped ones are valid, admin folders override, bad files are explained.

Their length in real tokens is checked in test_preamble_tokens.py.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from model.errors import PreambleError
from model.preamble import builtin_modes_dir, load_modes, load_preamble_file, resolve_preamble
from model.types import ImagePart, TextPart

SHIPPED = ("default", "captioner", "storyteller")


def _write_mode(folder: Path, filename: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(body, encoding="utf-8")
    return path


def test_shipped_modes_load_with_alternating_example_turns_and_rgb_images():
    modes = load_modes(None)
    assert set(SHIPPED) <= set(modes)
    for name in SHIPPED:
        preamble = modes[name]
        assert preamble.name == name and preamble.text and preamble.description
        roles = [turn.role for turn in preamble.examples]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        images = [p for turn in preamble.examples for p in turn.parts if isinstance(p, ImagePart)]
        assert images and all(p.image.mode == "RGB" and p.key.startswith("preamble-") for p in images)


def test_shipped_example_images_are_small_files():
    images = list((builtin_modes_dir() / "images").glob("*.png"))
    assert images and all(path.stat().st_size < 10_000 for path in images)


def test_same_image_file_gets_the_same_key_in_every_mode():
    modes = load_modes(None)
    keys = {
        mode: {p.key for turn in modes[mode].examples for p in turn.parts if isinstance(p, ImagePart)}
        for mode in ("default", "captioner")
    }
    assert keys["default"] & keys["captioner"]  # both use red_circle.png


def test_admin_folder_adds_modes_and_overrides_by_name(tmp_path):
    _write_mode(tmp_path, "mine.toml", 'name = "default"\ntext = "Be brief."\n')
    _write_mode(tmp_path, "pirate.toml", 'name = "pirate"\ntext = "Talk like a pirate."\n')
    modes = load_modes(tmp_path)
    assert modes["default"].text == "Be brief." and modes["default"].examples == ()
    assert modes["pirate"].text == "Talk like a pirate."
    assert "captioner" in modes


def test_broken_admin_files_are_logged_and_skipped(tmp_path, caplog):
    _write_mode(tmp_path, "broken.toml", "name = \n")
    _write_mode(tmp_path, "norole.toml", 'name = "x"\ntext = "t"\n[[examples]]\nrole = "bot"\ntext = "hi"\n')
    with caplog.at_level(logging.WARNING, logger="model.preamble"):
        modes = load_modes(tmp_path)
    assert "x" not in modes and set(SHIPPED) <= set(modes)
    assert "broken.toml" in caplog.text and "norole.toml" in caplog.text


def test_resolve_preamble_accepts_none_a_mode_name_or_a_file_path(tmp_path):
    modes = load_modes(None)
    assert resolve_preamble("none", modes) is None
    assert resolve_preamble(" None ", modes) is None
    assert resolve_preamble("captioner", modes) is modes["captioner"]
    path = _write_mode(tmp_path, "custom.toml", 'name = "custom"\ntext = "Hello."\n')
    assert resolve_preamble(str(path), modes).name == "custom"


def test_resolve_preamble_explains_an_unknown_name():
    with pytest.raises(PreambleError) as raised:
        resolve_preamble("pirate", load_modes(None))
    message = str(raised.value)
    assert "pirate" in message and "none" in message and "captioner" in message


def test_missing_file_and_missing_image_are_clear_errors(tmp_path):
    with pytest.raises(PreambleError, match="Cannot read"):
        resolve_preamble(str(tmp_path / "absent.toml"), {})
    body = 'name = "a"\ntext = "t"\n[[examples]]\nrole = "user"\nimages = ["images/nope.png"]\n'
    with pytest.raises(PreambleError, match="nope.png"):
        load_preamble_file(_write_mode(tmp_path, "a.toml", body))


def test_example_images_must_stay_inside_the_mode_folder(tmp_path):
    shutil.copy(builtin_modes_dir() / "images" / "red_circle.png", tmp_path / "outside.png")
    body = 'name = "a"\ntext = "t"\n[[examples]]\nrole = "user"\nimages = ["../outside.png"]\n'
    with pytest.raises(PreambleError, match="inside"):
        load_preamble_file(_write_mode(tmp_path / "modes", "a.toml", body))


def test_image_paths_are_relative_to_the_mode_file(tmp_path):
    folder = tmp_path / "modes"
    (folder / "pics").mkdir(parents=True)
    shutil.copy(builtin_modes_dir() / "images" / "red_circle.png", folder / "pics" / "c.png")
    body = 'name = "a"\ntext = "t"\n[[examples]]\nrole = "user"\nimages = ["pics/c.png"]\ntext = "What?"\n'
    preamble = load_preamble_file(_write_mode(folder, "a.toml", body))
    parts = preamble.examples[0].parts
    assert isinstance(parts[0], ImagePart) and parts[0].image.size == (128, 128)
    assert parts[1] == TextPart("What?")
