"""model/backends.py: the backend a deployment names, from plain options (what MODEL_BACKEND wiring calls)."""

from __future__ import annotations

import shutil

import pytest

from model.backends import BackendOptions, create_backend, parse_tgi_urls
from model.errors import ModelLoadError
from model.service import ModelService
from model.tgi import TgiBackend
from model.types import GenerationParams
from tgi_helpers import ask, collect


def test_tgi_urls_are_split_trimmed_checked_and_deduplicated():
    assert parse_tgi_urls(" http://tgi-a:80/ ,https://tgi-b.internal:8443,, http://tgi-a:80") == (
        "http://tgi-a:80",
        "https://tgi-b.internal:8443",
    )
    assert parse_tgi_urls("") == ()
    for bad in ["tgi:80", "ftp://tgi", "http://", "http://ok:80, file:///etc/passwd"]:
        with pytest.raises(ValueError, match="TGI_URL"):
            parse_tgi_urls(bad)


def test_a_bad_url_is_reported_without_its_password():
    with pytest.raises(ValueError) as raised:
        parse_tgi_urls("gopher://user:s3cret@tgi:80")
    assert "s3cret" not in str(raised.value)


async def test_tgi_backend_needs_only_the_processor_and_config(tmp_path, tiny_checkpoint, tgi):
    no_weights = tmp_path / "processor-only"
    shutil.copytree(tiny_checkpoint, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    backend = await create_backend(
        BackendOptions(kind="tgi", model_id=str(no_weights), tgi_urls=(tgi.url,), max_images=2)
    )
    assert isinstance(backend, TgiBackend)
    await backend.start()
    try:
        _, result = await collect(backend, ask("Hello"), GenerationParams(max_new_tokens=4))
    finally:
        await backend.stop()
    assert result.completion_tokens == 4


async def test_local_backend_loads_the_checkpoint(tiny_checkpoint):
    backend = await create_backend(BackendOptions(kind="local", model_id=str(tiny_checkpoint), dtype="float32"))
    assert isinstance(backend, ModelService)
    assert (backend.prefix_cache_bytes, backend.prefill_chunk_tokens) == (None, 256)  # the defaults
    assert backend.cpu_packed_linears


async def test_the_engine_settings_reach_the_local_service(tiny_checkpoint, monkeypatch):
    from bot.lifecycle import backend_options
    from bot.settings import Settings

    monkeypatch.setenv("PREFIX_CACHE_BYTES", "1048576")
    monkeypatch.setenv("PREFILL_CHUNK_TOKENS", "0")
    monkeypatch.setenv("CPU_PACKED_LINEARS", "false")
    settings = Settings(_env_file=None, model_id=str(tiny_checkpoint), model_dtype="float32")
    backend = await create_backend(backend_options(settings))
    assert (backend.prefix_cache_bytes, backend.prefill_chunk_tokens) == (1048576, 0)
    assert not backend.cpu_packed_linears
    monkeypatch.setenv("PREFIX_CACHE_BYTES", "")
    assert Settings(_env_file=None).prefix_cache_bytes is None  # empty: sized automatically


async def test_misconfigured_backends_say_what_to_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="local or tgi"):
        await create_backend(BackendOptions(kind="vllm"))
    with pytest.raises(ModelLoadError, match="needs TGI_URL"):
        await create_backend(BackendOptions(kind="tgi"))
    with pytest.raises(ModelLoadError, match="tokenizer and processor"):
        await create_backend(BackendOptions(kind="tgi", model_id=str(tmp_path), tgi_urls=("http://tgi:80",)))


async def test_the_servers_are_reached_while_the_hub_is_offline(tgi, start_backend, tiny_loaded):
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session

    assert constants.is_offline_mode()  # as in a bot that reads its tokenizer from a filled cache
    with pytest.raises(OfflineModeIsEnabled):
        get_session().get("https://huggingface.co/api/models")
    backend = await start_backend(tiny_loaded, [tgi.url])
    _, result = await collect(backend, ask("Hello"), GenerationParams(max_new_tokens=3))
    assert result.completion_tokens == 3 and (await backend.health()).ready
