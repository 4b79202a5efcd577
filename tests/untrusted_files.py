"""Hostile files for the tests: a real EPS PostScript payload, a fake Ghostscript that records being
run, and images that are tiny to send but huge to decode."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Valid EPS: Pillow's EPS plugin accepts it and, to decode it, runs Ghostscript (`gs`).
EPS_PAYLOAD = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 16 16
%%EndComments
newpath 0 0 moveto 16 16 lineto stroke
showpage
%%EOF
"""


@dataclass(frozen=True)
class FakeGhostscript:
    """A `gs` on PATH that only writes down that it was run (and with what)."""

    folder: Path
    record: Path

    def was_run(self) -> bool:
        return self.record.exists()


def install_fake_ghostscript(folder: Path) -> FakeGhostscript:
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "gs-was-run"
    script = folder / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\nexit 0\n')
    os.chmod(script, 0o755)
    return FakeGhostscript(folder=folder, record=record)


def decompression_heavy_png(side: int) -> bytes:
    """A 1-bit PNG of side x side pixels: a few KB to send, about 3 bytes a pixel once decoded."""
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
