"""Fail fast when a hub id is asked for and the Hugging Face hub cannot be reached.

Without network, `from_pretrained` retries every file with backoff: an offline start with the default
MODEL_ID spent about 2.5 minutes on 72 retry warnings before it failed. One short probe first tells us
whether the hub answers at all. If it does not, a model already in the local cache is loaded from there
(`local_files_only`), and otherwise the start fails at once with what to do. In offline mode
(HF_HUB_OFFLINE=1) the libraries make no requests, so there is nothing to probe.
"""

from __future__ import annotations

import logging

from huggingface_hub import HfApi, constants, is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError

from model.errors import ModelLoadError

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


def hub_load_options(model_id: str) -> dict:
    """Extra `from_pretrained` options for hub id `model_id`; raise `ModelLoadError` if it cannot load."""
    if is_offline_mode():
        return {}
    problem = _unreachable_because(model_id)
    if problem is None:
        return {}
    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        logger.warning(
            "The Hugging Face hub cannot be reached (%s); loading %s from the local cache", problem, model_id
        )
        return {"local_files_only": True}
    raise ModelLoadError(
        f"Could not reach the Hugging Face hub at {constants.ENDPOINT} ({problem}), and {model_id!r} is not "
        "in the local cache. On a machine with network, download it with `hf download "
        f"{model_id} --local-dir DIR`, copy DIR here and set MODEL_ID=DIR; or connect this machine to "
        "the network (set HTTPS_PROXY if it needs a proxy) and start again."
    )


def _unreachable_because(model_id: str) -> str | None:
    """None if the hub answered (even with an error such as "not found"), else why it did not."""
    try:
        HfApi().model_info(model_id, timeout=PROBE_TIMEOUT_S)
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", 0) or 0
        # A server error would be retried like no network; anything else (a missing or gated
        # repository) is for from_pretrained to report.
        return f"it answered HTTP {status}" if status >= 500 else None
    except Exception as error:  # no answer at all: DNS, refused, timed out, proxy, TLS
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return None
