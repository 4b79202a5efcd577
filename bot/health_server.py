"""A small HTTP endpoint for outside checks: `/healthz` for container health, `/metrics` for Prometheus.

It runs only when METRICS_PORT is set, on METRICS_LISTEN (loopback unless told otherwise: the numbers
and health details are for the machine's operator, not the internet), in the bot's own event loop, and
starts before the model loads, so a container's healthcheck sees "starting" rather than nothing.

`/healthz` answers 200 when the store answers a query and the model backend says it is ready
(`ModelBackend.health()`), else 503; either way with a short JSON body that says which part is not, e.g.
`{"status": "unhealthy", "store": {"ok": true}, "model": {"ok": false, "detail": "0 of 1 model servers
answering (...)"}}`. Each check has a few seconds, so a hung database can't hang the probe.
`/metrics` is the application's own registry (`bot.metrics`) in Prometheus's text format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from telegram.ext import Application

from bot.errors import ListenFailed
from bot.metrics import BotMetrics
from bot.runtime import current_runtime
from model.backend import BackendHealth

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0  # Docker's healthcheck (Dockerfile) gives the whole request 5 s
SERVER_KEY = "idefics_health_server"


class HealthServer:
    """`await start()` listens on (host, port) (port 0: any free one, then `port` says which); `stop()`."""

    def __init__(self, application: Application, metrics: BotMetrics, *, host: str, port: int) -> None:
        self._application = application
        self._metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._serve_metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            raise ListenFailed(
                f"could not listen on METRICS_LISTEN={self.host} METRICS_PORT={self.port} "
                f"({error.strerror or error}); choose a free port, or leave METRICS_PORT empty to turn "
                "the endpoint off"
            ) from error
        self.port = self._runner.addresses[0][1]
        log.info("health and metrics at http://%s:%d/healthz and /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        runtime = current_runtime(self._application)
        if runtime is None:
            return web.json_response({"status": "starting"}, status=503)
        store, model = await asyncio.gather(_check(runtime.store.ping()), _check(runtime.model.health()))
        healthy = store["ok"] and model["ok"]
        body = {"status": "ok" if healthy else "unhealthy", "store": store, "model": model}
        return web.json_response(body, status=200 if healthy else 503)

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        # The format the scraper asks for (Accept): Prometheus's text format, or OpenMetrics.
        encode, content_type = choose_encoder(request.headers.get("Accept"))
        if (runtime := current_runtime(self._application)) is not None:
            await self._metrics.refresh(runtime.store.inbox)
        return web.Response(body=encode(self._metrics.registry), headers={"Content-Type": content_type})


async def _check(probe: Awaitable[Any]) -> dict[str, Any]:
    """{"ok": bool} and, when there is something to say, a one-line "detail"."""
    try:
        outcome = await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT_S:.0f} s"}
    except Exception as error:  # noqa: BLE001 - any failure of the probe means "not healthy"
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return {"ok": False, "detail": f"{type(error).__name__}: {reason}".rstrip(": ")}
    if isinstance(outcome, BackendHealth):
        return {"ok": outcome.ready, **({"detail": outcome.detail} if outcome.detail else {})}
    return {"ok": True}


async def start_health_server(
    application: Application, metrics: BotMetrics, host: str, port: int
) -> HealthServer:
    server = HealthServer(application, metrics, host=host, port=port)
    await server.start()
    application.bot_data[SERVER_KEY] = server
    return server


def health_server_of(application: Application) -> HealthServer | None:
    return application.bot_data.get(SERVER_KEY)


async def stop_health_server(application: Application) -> None:
    server = application.bot_data.pop(SERVER_KEY, None)
    if server is not None:
        await server.stop()
