"""Dockerfile and compose.yaml, read by real parsers: no Docker engine here, so check what they say.

The Dockerfile is parsed by dockerfile-parse (ARGs in FROM resolved); compose.yaml is validated against
the Compose Specification's own JSON schema (tests/data/compose-spec.json), then held to what the README's
"Docker" section promises.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
HF_CACHE = "/var/cache/huggingface"


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's name and its (instruction, value) pairs, ARGs in FROM resolved."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    resolved = iter(parser.parent_images)
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            name = item["value"].split()[-1]
            current = found.setdefault(name, [("FROM", next(resolved))])
        elif item["instruction"] != "COMMENT":
            current.append((item["instruction"], item["value"]))
    return found


def values(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [value for name, value in stage if name == instruction]


def env(stage: list[tuple[str, str]], name: str) -> str | None:
    for value in values(stage, "ENV"):
        if match := re.search(rf"(?:^|\s){name}=(\S+)", value):
            return match.group(1)
    return None


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_dockerfile_has_a_slim_target_and_a_cuda_runtime_target():
    found = stages()
    assert set(found) == {"slim", "gpu"}
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", found["gpu"][0][1])
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", found["slim"][0][1])
    assert (env(found["slim"], "MODEL_BACKEND"), env(found["gpu"], "MODEL_BACKEND")) == ("tgi", "local")
    slim_install = " ".join(values(found["slim"], "RUN"))
    assert "download.pytorch.org/whl/cpu" in slim_install  # no multi-gigabyte CUDA PyTorch in it
    assert "quantization" in " ".join(values(found["gpu"], "RUN"))


@pytest.mark.parametrize("target", ["slim", "gpu"])
def test_each_image_runs_as_an_unprivileged_user_it_creates(target):
    stage = stages()[target]
    user = values(stage, "USER")[-1]
    assert user not in ("root", "0") and not user.startswith("0:")
    assert any(re.search(rf"useradd [^&]*\b{user}(\s|$)", run) for run in values(stage, "RUN"))
    last_run = max(i for i, (name, _) in enumerate(stage) if name == "RUN")
    assert stage.index(("USER", user)) > last_run  # nothing runs as root after the switch


@pytest.mark.parametrize("target", ["slim", "gpu"])
def test_the_hugging_face_cache_is_a_volume(target):
    stage = stages()[target]
    assert env(stage, "HF_HOME") == HF_CACHE
    assert HF_CACHE in json.loads(values(stage, "VOLUME")[-1])


@pytest.mark.parametrize("target", ["slim", "gpu"])
def test_the_healthcheck_asks_the_bots_healthz_on_metrics_port(target):
    stage = stages()[target]
    [check] = values(stage, "HEALTHCHECK")
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python" and "/healthz" in command[-1] and "METRICS_PORT" in command[-1]
    assert env(stage, "METRICS_PORT").isdigit()
    assert json.loads(values(stage, "ENTRYPOINT")[-1]) == ["idefics-bot"]


def test_what_the_images_copy_exists_and_secrets_stay_out():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "idefics-bot" in scripts
    ignored = (ROOT / ".dockerignore").read_text().split()
    for stage in stages().values():
        for copied in values(stage, "COPY"):
            *sources, _ = copied.split()
            for source in sources:
                assert (ROOT / source).exists() and source not in ignored
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_compose_file_follows_the_compose_specification():
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    document = compose()
    assert list(validator.iter_errors(document)) == []
    broken = copy.deepcopy(document)
    broken["services"]["tgi"]["deploy"]["resources"]["reservations"]["devices"] = "all the GPUs"
    assert list(validator.iter_errors(broken))  # the schema is really being applied


def test_compose_profiles_put_the_model_in_tgi_or_in_the_bot():
    services = compose()["services"]
    profiles = {name: tuple(service.get("profiles", ())) for name, service in services.items()}
    assert profiles == {"postgres": (), "tgi": ("tgi",), "bot": ("tgi",), "bot-gpu": ("local",)}


def test_the_tgi_service_is_pinned_on_gpus_with_shared_memory_and_the_model_id():
    tgi = compose()["services"]["tgi"]
    assert tgi["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.7"
    assert tgi["shm_size"] and "--model-id" in tgi["command"]
    model = tgi["command"][tgi["command"].index("--model-id") + 1]
    assert model == "${MODEL_ID:-HuggingFaceM4/idefics-9b-instruct}"
    [gpus] = tgi["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["driver"] == "nvidia" and "gpu" in gpus["capabilities"]
    assert "/health" in " ".join(tgi["healthcheck"]["test"])


def test_the_bots_use_the_dockerfile_targets_and_reach_postgres_and_tgi():
    services = compose()["services"]
    bot, local = services["bot"], services["bot-gpu"]
    assert (bot["build"]["target"], local["build"]["target"]) == ("slim", "gpu")
    assert set(stages()) >= {bot["build"]["target"], local["build"]["target"]}
    assert bot["environment"]["MODEL_BACKEND"] == "tgi" and local["environment"]["MODEL_BACKEND"] == "local"
    assert bot["environment"]["TGI_URL"] == "http://tgi:80"  # TGI's image listens on port 80
    for service in (bot, local):
        assert "@postgres:5432/" in service["environment"]["DATABASE_URL"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(volume.endswith(":" + HF_CACHE) for volume in service["volumes"])
    assert bot["depends_on"]["tgi"]["condition"] == "service_healthy"
    assert local["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_every_setting_the_images_and_compose_give_the_bot_is_one_it_reads():
    from bot.settings import Settings

    bot_reads = {name.upper() for name in Settings.model_fields} | {"HF_HOME"}  # HF_HOME: for huggingface_hub
    for_python_and_pip = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                          "PIP_DISABLE_PIP_VERSION_CHECK", "PATH"}
    for stage in stages().values():
        given = {name for value in values(stage, "ENV") for name in re.findall(r"(?:^|\s)([A-Z_]+)=", value)}
        assert {"MODEL_BACKEND", "METRICS_PORT", "DATABASE_URL"} <= given
        assert given - bot_reads <= for_python_and_pip
    services = compose()["services"]
    for name in ("bot", "bot-gpu"):
        assert set(services[name]["environment"]) <= bot_reads, name
