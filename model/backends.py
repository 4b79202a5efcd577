"""Make the model backend a deployment asks for, from plain options (the bot passes its settings in).

    backend = await create_backend(BackendOptions(kind="tgi", tgi_urls=parse_tgi_urls(text), ...))
    await backend.start()

`local` loads the checkpoint here and wraps it in ModelService; `tgi` loads only the checkpoint's
processor (tokenizer and image size, for building and fitting prompts; no weights) and talks to the
text-generation-inference servers at `tgi_urls`. Either is returned not yet started.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from model.backend import ModelBackend
from model.errors import ModelLoadError
from model.tgi_replicas import display_url
from model.tgi_retry import RetryPolicy

log = logging.getLogger(__name__)

BACKEND_KINDS = ("local", "tgi")


@dataclass(frozen=True)
class BackendOptions:
    kind: str = "local"  # local | tgi
    model_id: str = "HuggingFaceM4/idefics-9b-instruct"
    dtype: str = "auto"  # local only
    quantization: str = "none"  # local only
    max_batch_size: int = 8  # local only: TGI batches on its own
    max_images: int = 4
    prefix_cache_bytes: int | None = None  # local only: None = from free memory, 0 = off
    prefill_chunk_tokens: int = 256  # local only: 0 = whole prompts at once
    cpu_packed_linears: bool = True  # local only: multi-row linears through oneDNN on CPU float32
    tgi_urls: tuple[str, ...] = ()
    tgi_retry: RetryPolicy = RetryPolicy()  # tgi only: the waits while every server is overloaded
    tgi_health_interval_s: float = 5.0  # tgi only: how often each server's /health is checked


async def create_backend(options: BackendOptions) -> ModelBackend:
    """The backend for `options`, loaded but not started; `ModelLoadError` says what to fix."""
    if options.kind == "local":
        return await _local_backend(options)
    if options.kind == "tgi":
        return await _tgi_backend(options)
    raise ModelLoadError(f"MODEL_BACKEND {options.kind!r} is not supported: use local or tgi.")


def parse_tgi_urls(text: str) -> tuple[str, ...]:
    """TGI_URL's comma-separated server URLs, checked and without duplicates; ValueError if one is bad."""
    urls: list[str] = []
    for raw in text.split(","):
        url = raw.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"TGI_URL must list http(s) URLs of text-generation-inference servers, separated by commas; "
                f"{display_url(url) or raw.strip()!r} is not one (e.g. http://tgi:80)."
            )
        if url not in urls:
            urls.append(url)
    return tuple(urls)


async def _local_backend(options: BackendOptions) -> ModelBackend:
    from model.loaded import LoadOptions
    from model.loading import load_model
    from model.service import ModelService

    load = LoadOptions(model_id=options.model_id, dtype=options.dtype, quantization=options.quantization)
    log.info("loading model %s (dtype %s, quantization %s)", load.model_id, load.dtype, load.quantization)
    loaded = await asyncio.to_thread(load_model, load)
    log.info("model loaded in %.1f s on %s", loaded.load_seconds, loaded.device)
    return ModelService(
        loaded,
        max_batch_size=options.max_batch_size,
        max_images=options.max_images,
        prefix_cache_bytes=options.prefix_cache_bytes,
        prefill_chunk_tokens=options.prefill_chunk_tokens,
        cpu_packed_linears=options.cpu_packed_linears,
    )


async def _tgi_backend(options: BackendOptions) -> ModelBackend:
    from model.tgi import TgiBackend

    if not options.tgi_urls:
        raise ModelLoadError(
            "MODEL_BACKEND=tgi needs TGI_URL: the URL of a text-generation-inference server (or several, "
            "separated by commas), e.g. TGI_URL=http://tgi:80."
        )
    processor, max_positions = await asyncio.to_thread(load_processor, options.model_id)
    log.info("TGI backend for %s with %d server(s)", options.model_id, len(options.tgi_urls))
    return TgiBackend(
        processor,
        max_positions,
        options.tgi_urls,
        max_images=options.max_images,
        retry=options.tgi_retry,
        health_interval_s=options.tgi_health_interval_s,
    )


def load_processor(model_id: str) -> tuple[Any, int]:
    """The checkpoint's processor and context size, without its weights (hub id or local directory).

    Loaded as model/loading.py loads it (the served-format tokenizer; a fast failure without the hub)."""
    from transformers import AutoConfig, AutoProcessor

    from model.hub import hub_load_options
    from model.tokenization import SERVED_FORMAT_OPTIONS

    options = {} if Path(model_id).expanduser().is_dir() else hub_load_options(model_id)
    try:
        processor = AutoProcessor.from_pretrained(model_id, **SERVED_FORMAT_OPTIONS, **options)
        max_positions = int(AutoConfig.from_pretrained(model_id, **options).max_position_embeddings)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(
            f"Could not load the tokenizer and processor of {model_id!r} ({reason}). "
            "MODEL_BACKEND=tgi needs them to build prompts (not the weights): set MODEL_ID to the model the "
            "TGI servers serve, and make its config, tokenizer and processor files reachable (the hub, the "
            "HF cache, or a local directory)."
        ) from error
    return processor, max_positions
