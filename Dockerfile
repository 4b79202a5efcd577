# syntax=docker/dockerfile:1
# idefics-bot images; two targets (README "Docker"):
#   docker build --target slim -t idefics-bot:slim .   the bot alone, MODEL_BACKEND=tgi: the model runs in
#                                                       text-generation-inference; CPU PyTorch, no CUDA
#   docker build --target gpu  -t idefics-bot:gpu  .   the bot with the model inside, MODEL_BACKEND=local,
#                                                       on a CUDA runtime (needs the NVIDIA container toolkit)
# Both run as the unprivileged user "idefics", keep the Hugging Face cache in the volume
# /var/cache/huggingface and a SQLite database (when DATABASE_URL is left alone) in /var/lib/idefics-bot,
# and report their health from /healthz on METRICS_PORT. Settings come from the environment (.env.example).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/idefics-bot/bin:$PATH \
    HF_HOME=/var/cache/huggingface \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/idefics-bot/idefics-bot.sqlite3 \
    MODEL_BACKEND=tgi \
    METRICS_PORT=9090
RUN useradd --system --uid 10001 --user-group --create-home idefics \
    && mkdir -p /var/cache/huggingface /var/lib/idefics-bot \
    && chown idefics:idefics /var/cache/huggingface /var/lib/idefics-bot
WORKDIR /opt/idefics-bot/src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY model ./model
COPY storage ./storage
COPY standin ./standin
# The CPU build of PyTorch first, so that pip does not pull the CUDA one: this image never runs the model.
RUN python -m venv /opt/idefics-bot \
    && pip install --index-url https://download.pytorch.org/whl/cpu torch \
    && pip install '.[postgres]'
USER idefics
VOLUME ["/var/cache/huggingface", "/var/lib/idefics-bot"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['METRICS_PORT'], timeout=4)"]
ENTRYPOINT ["idefics-bot"]
CMD ["run"]

FROM ${CUDA_IMAGE} AS gpu
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/idefics-bot/bin:$PATH \
    HF_HOME=/var/cache/huggingface \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/idefics-bot/idefics-bot.sqlite3 \
    MODEL_BACKEND=local \
    METRICS_PORT=9090
RUN useradd --system --uid 10001 --user-group --create-home idefics \
    && mkdir -p /var/cache/huggingface /var/lib/idefics-bot \
    && chown idefics:idefics /var/cache/huggingface /var/lib/idefics-bot
WORKDIR /opt/idefics-bot/src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY model ./model
COPY storage ./storage
COPY standin ./standin
# PyPI's PyTorch wheels bring their own CUDA libraries; the base image gives the runtime layout and the
# driver hooks. bitsandbytes for MODEL_QUANTIZATION=8bit/4bit.
RUN python3 -m venv /opt/idefics-bot \
    && pip install '.[quantization,postgres]'
USER idefics
VOLUME ["/var/cache/huggingface", "/var/lib/idefics-bot"]
# Loading (and on first start downloading) the 9B weights takes minutes: a long start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['METRICS_PORT'], timeout=4)"]
ENTRYPOINT ["idefics-bot"]
CMD ["run"]
