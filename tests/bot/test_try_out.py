"""`idefics-bot try` as a newcomer runs it: a separate process, no token, no model, lines from a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot import texts
from bot.try_out import TINY_MODEL_DIR, _printable, _tiny_model
from tests.bot.bot_process import REPO_ROOT
from tests.bot.conftest import image_bytes


def run_try(cwd: Path, lines: list[str], **env: str) -> subprocess.CompletedProcess:
    ours = ("TELEGRAM_", "DATABASE_", "MODEL_")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.run(
        [sys.executable, "-m", "bot", "try", "--max-new-tokens", "6"],
        input="".join(f"{line}\n" for line in lines),
        env={**inherited, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", **env},
        cwd=cwd, capture_output=True, text=True, timeout=240,
    )


def answers_to(transcript: str, line: str) -> list[str]:
    """What was printed after `> line` up to the next line the person sent."""
    after = transcript.split(f"> {line}\n", 1)[1]
    return after.split("\n> ", 1)[0].splitlines()


def test_try_chats_with_the_real_bot_from_a_pipe_with_a_tiny_model_it_makes_itself(tmp_path):
    (tmp_path / "cat.png").write_bytes(image_bytes("red", fmt="PNG"))
    (tmp_path / "notes.txt").write_text("not an image")
    result = run_try(tmp_path, [
        "what do you see?", "cat.png what colour is it?", "^ /classify red, blue", "notes.txt", "/new",
    ])
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Writing model shards" not in result.stderr
    assert "Making a tiny random IDEFICS checkpoint in data/try-model" in out
    assert (tmp_path / "data" / "try-model" / "config.json").is_file()
    first = answers_to(out, "what do you see?")
    assert any(line.startswith("  … ") for line in first), "the answer was not seen growing"
    assert any(line.startswith("IDEFICS: ") for line in first)
    assert "[!1 🔄 Regenerate]  [!2 🆕 New conversation]" in "\n".join(first)
    assert any(line.startswith("IDEFICS: ") for line in answers_to(out, "cat.png what colour is it?"))
    ranking = "\n".join(answers_to(out, "^ /classify red, blue"))
    assert re.search(r"1\. (red|blue) — \d+\.\d%", ranking), ranking
    assert f"IDEFICS: {texts.ONLY_IMAGES}" in answers_to(out, "notes.txt")
    assert answers_to(out, "/new") == [f"IDEFICS: {texts.NEW_CONVERSATION}"]


def test_try_loads_the_model_that_model_id_names(tmp_path, tiny_checkpoint_eou):
    result = run_try(tmp_path, ["hello", "!2"], MODEL_ID=str(tiny_checkpoint_eou))
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Model: {tiny_checkpoint_eou} (MODEL_ID)" in out
    assert "Making a tiny" not in out and not (tmp_path / "data" / "try-model").exists()
    assert any(line.startswith("IDEFICS: ") for line in answers_to(out, "hello"))
    assert answers_to(out, "!2") == [f"  ({texts.NEW_CONVERSATION})"], "button 2 was not pressed"


def test_the_tiny_model_is_made_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "try-model.partial").mkdir(parents=True)  # an earlier try killed midway
    made = _tiny_model()
    written = (made / "config.json").stat().st_mtime_ns
    assert _tiny_model() == made == TINY_MODEL_DIR
    assert (made / "config.json").stat().st_mtime_ns == written
    assert not (tmp_path / "data" / "try-model.partial").exists()


def test_what_the_bot_writes_cannot_drive_the_terminal():
    shown = _printable("red\x1b[2J\x1b]0;owned\x07 square\r\nnext line")
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert shown == "red\\x1b[2J\\x1b]0;owned\\x07 square\\r\nnext line"
