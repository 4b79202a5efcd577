"""A hub id without network fails within seconds, with what to do and no retry warnings; a cached one loads.

The hub endpoint is pointed at places that answer the way a machine without network does: a name that
does not resolve, a port nobody listens on, a server that accepts the connection and never replies; each
through `load_model` with offline mode off. Loading a model from the local cache is a real start in a
fresh process, since huggingface_hub and transformers read HF_HOME and HF_HUB_OFFLINE at import.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from model.errors import ModelLoadError
from model.hub import PROBE_TIMEOUT_S
from model.loaded import LoadOptions
from model.loading import load_model

DEFAULT_MODEL_ID = "HuggingFaceM4/idefics-9b-instruct"
REPO_ROOT = Path(__file__).parents[2]
START = """
import logging, time
logging.basicConfig(level=logging.INFO)
from model.errors import ModelLoadError
from model.loaded import LoadOptions
from model.loading import load_model
started = time.perf_counter()
try:
    loaded = load_model(LoadOptions())
    print("LOADED", len(loaded.processor.tokenizer))
except ModelLoadError as error:
    print("ERROR", error)
print("SECONDS", time.perf_counter() - started)
"""


def _start(endpoint: str, hf_home: Path) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    environment.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.Popen(
        [sys.executable, "-c", START], cwd=REPO_ROOT, env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cache_with(checkpoint: Path, hf_home: Path, model_id: str) -> None:
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/files}."""
    repo = hf_home / "hub" / ("models--" + model_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture(scope="module")
def cached_start(tmp_path_factory, tiny_checkpoint):
    """A start with the default MODEL_ID in the cache and the hub refusing connections: (stdout, stderr)."""
    hf_home = tmp_path_factory.mktemp("hub-offline") / "hf-home"
    _cache_with(tiny_checkpoint, hf_home, DEFAULT_MODEL_ID)
    process = _start(f"http://127.0.0.1:{_free_port()}", hf_home)
    try:
        return process.communicate(timeout=120)
    finally:
        process.kill()


def _seconds(stdout: str) -> float:
    return float(next(line for line in stdout.splitlines() if line.startswith("SECONDS")).split()[1])


def _assert_says_what_to_do(message: str) -> None:
    assert "Could not reach the Hugging Face hub" in message and DEFAULT_MODEL_ID in message
    assert f"hf download {DEFAULT_MODEL_ID} --local-dir DIR" in message and "MODEL_ID=DIR" in message
    assert "\n" not in message


@pytest.fixture
def online_mode(monkeypatch, tmp_path):
    """Offline mode off (the suite runs with HF_HUB_OFFLINE=1) and an empty cache."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))


@pytest.fixture
def silent_server():
    """Accepts connections (the kernel does) but never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


# What the probe finds in each case.
ENDPOINTS = {"unresolvable": "ConnectError", "refused": "ConnectError", "silent": "Timeout"}


def _endpoint(request, kind: str) -> str:
    if kind == "silent":
        return request.getfixturevalue("silent_server")
    if kind == "refused":
        return f"http://127.0.0.1:{_free_port()}"
    return "http://hub.idefics-bot-test.invalid"  # .invalid never resolves (RFC 2606)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_an_unreachable_hub_fails_within_seconds_saying_what_to_do(
    request, monkeypatch, online_mode, caplog, endpoint
):
    monkeypatch.setattr(constants, "ENDPOINT", _endpoint(request, endpoint))
    started = time.perf_counter()
    with caplog.at_level(logging.INFO), pytest.raises(ModelLoadError) as raised:
        load_model(LoadOptions())
    assert time.perf_counter() - started < PROBE_TIMEOUT_S + 3.0
    _assert_says_what_to_do(str(raised.value))
    assert ENDPOINTS[endpoint] in str(raised.value)  # the probe's own finding, not offline mode
    assert "retry" not in caplog.text.lower()


def test_a_cached_model_loads_from_the_cache_when_the_hub_is_unreachable(cached_start):
    stdout, stderr = cached_start
    seconds = _seconds(stdout)
    assert "LOADED" in stdout, stderr[-2000:]
    assert f"loading {DEFAULT_MODEL_ID} from the local cache" in stderr
    assert "retry" not in stderr.lower() and seconds < PROBE_TIMEOUT_S + 10.0
