"""A stand-in for a text-generation-inference 3.x server, for tests of clients such as model/tgi.py.

It listens on 127.0.0.1 in the test's event loop and answers like TGI's router does: POST /generate and
/generate_stream (SSE, see wire.py), GET /health and /info (and POST /, which is either, as in TGI); the
same validation errors with the same words (validation.py), images read from ``![](data:...)`` in
`inputs` (inputs.py), and `Model is overloaded` when more requests are in flight than
`max_concurrent_requests`. Its text is real: a tiny
IDEFICS checkpoint generates it (engine.py). Tests make it misbehave through `faults` and read what
reached it through `received`, `fetch_attempts` and the counters.

    async with TgiStandIn(loaded) as tgi:        # loaded = model.loading.load_model(tiny checkpoint)
        client = AsyncInferenceClient(base_url=tgi.url)
        tgi.faults.overloaded = 2                # the next two generate requests are refused
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from model.loaded import LoadedModel
from standin.tgi.engine import Engine, Finished, Job, TgiGenerationError
from standin.tgi.inputs import split_inputs
from standin.tgi.validation import (Limits, Parameters, TgiValidationError, parse_request,
                                    validate_length, validate_parameters, validate_stream)
from standin.tgi.wire import (KEEP_ALIVE, OVERLOADED, VALIDATION_PREFIX, error_json,
                              generate_response, sse, stream_event)

TGI_VERSION = "3.3.7"


@dataclass
class Faults:
    """Misbehaviour on demand; each counter is used up one request at a time."""

    overloaded: int = 0  # generate requests refused with TGI's "Model is overloaded"
    unavailable: int = 0  # requests (any route) answered by a bare 503, as a proxy in front would
    unhealthy: bool = False  # /health answers 503 "unhealthy"
    drop_after_tokens: int | None = None  # the next stream's connection is cut after this many tokens
    failing: int = 0  # requests that fail in the model (TGI: "Request failed during generation")


@dataclass(frozen=True)
class Received:
    path: str
    inputs: str
    parameters: dict[str, Any]


@dataclass
class _Admitted:
    job: Job
    events: asyncio.Queue = field(default_factory=asyncio.Queue)


class TgiStandIn:
    """`await start()` (or `async with`), point the client at `url`, `await stop()`."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        limits: Limits | None = None,
        model_id: str = "HuggingFaceM4/idefics-9b-instruct",
        keep_alive_s: float = 15.0,
        port: int | None = None,
    ) -> None:
        self.engine = Engine(loaded)
        self.limits = limits or Limits()
        self.model_id = model_id
        self.keep_alive_s = keep_alive_s
        self.faults = Faults()
        self.received: list[Received] = []
        self.fetch_attempts: list[str] = []
        self.in_flight = 0
        self.completed = 0
        self.cancelled = 0
        self.health_checks = 0
        self._runner: web.AppRunner | None = None
        self._port = port  # None: a free one, chosen at the first start

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the TGI stand-in is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/info", self._info)
        app.router.add_post("/", self._compat_generate)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate_stream", self._generate_stream)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port or 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening; `start()` again comes back on the same port (a restarted server)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TgiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_sha": None,
            "model_pipeline_tag": None,
            **{name: value for name, value in asdict(self.limits).items() if name != "max_top_n_tokens"},
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": TGI_VERSION,
            "sha": None,
            "docker_label": None,
        }

    # --- routes ---

    async def _health(self, request: web.Request) -> web.StreamResponse:
        self.health_checks += 1
        if refusal := self._unavailable():
            return refusal
        if self.faults.unhealthy:
            return web.json_response(error_json("unhealthy", "healthcheck"), status=503)
        return web.Response(status=200)

    async def _info(self, request: web.Request) -> web.StreamResponse:
        return self._unavailable() or web.json_response(self.info())

    async def _compat_generate(self, request: web.Request) -> web.StreamResponse:
        """POST / (what huggingface_hub's client calls): /generate, or /generate_stream with "stream"."""
        try:
            streaming = bool((await request.json()).get("stream"))
        except (ValueError, AttributeError):
            streaming = False
        return await (self._generate_stream if streaming else self._generate)(request)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._unavailable():
            return refusal
        try:
            admitted = await self._admit(request, stream=False)
        except _Refused as refused:
            if refused.before_stream:
                return web.Response(status=refused.status, text=str(refused))
            return web.json_response(refused.body, status=refused.status)
        try:
            event = await self._next_event(admitted, wait_s=None)
            while not isinstance(event, (Finished, Exception)):
                event = await self._next_event(admitted, wait_s=None)
        finally:
            self._release(admitted)
        if isinstance(event, Exception):
            return web.json_response(error_json(str(event), "generation"), status=424)
        self.completed += 1
        params = admitted.job.params
        return web.json_response(generate_response(event, params.details or params.decoder_input_details))

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        if refusal := self._unavailable():
            return refusal
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        try:
            admitted = await self._admit(request, stream=True)
        except _Refused as refused:
            if refused.before_stream:  # axum's JSON extractor refused the body: no stream at all
                return web.Response(status=refused.status, text=str(refused))
            await response.prepare(request)
            await response.write(sse(refused.body))
            return response
        await response.prepare(request)
        try:
            await self._write_events(request, response, admitted)
        except (ConnectionResetError, asyncio.CancelledError):
            admitted.job.cancelled.set()
            self.cancelled += 1
            raise
        finally:
            self._release(admitted)
        return response

    # --- helpers ---

    async def _admit(self, request: web.Request, *, stream: bool) -> _Admitted:
        """Parse, count, validate and start a job, in TGI's order; raise `_Refused` as TGI refuses."""
        try:
            body = await request.json()
        except ValueError as error:
            message = f"Failed to parse the request body as JSON: {error}"
            raise _Refused(400, error_json(message, ""), before_stream=True)
        try:
            inputs, params = parse_request(body)
        except (ValueError, TypeError) as error:
            raise _Refused(422, error_json(str(error), ""), before_stream=True)
        self.received.append(Received(request.path, inputs, body.get("parameters") or {}))
        try:
            if stream:
                validate_stream(params)
        except TgiValidationError as error:
            raise _Refused(422, error_json(VALIDATION_PREFIX + str(error), "validation"))
        if self.faults.overloaded > 0 or self.in_flight >= self.limits.max_concurrent_requests:
            self.faults.overloaded = max(self.faults.overloaded - 1, 0)
            raise _Refused(429, error_json(OVERLOADED, "overloaded"))
        try:
            seed = validate_parameters(inputs, params, self.limits)
            chunks, counted = split_inputs(inputs, self.fetch_attempts)
            input_length = self.engine.router_input_length(counted)
            max_new_tokens = validate_length(input_length, params.max_new_tokens, self.limits)
        except TgiValidationError as error:
            raise _Refused(422, error_json(VALIDATION_PREFIX + str(error), "validation"))
        return self._start_job(chunks, params, max_new_tokens, seed, input_length)

    def _start_job(self, chunks, params: Parameters, max_new_tokens: int, seed, input_length) -> _Admitted:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = Job(
            chunks=chunks,
            params=params,
            max_new_tokens=max_new_tokens,
            seed=seed,
            input_length=input_length,
            emit=lambda event: loop.call_soon_threadsafe(events.put_nowait, event),
            fetch_attempts=self.fetch_attempts,
        )
        self.in_flight += 1
        if self.faults.failing > 0:
            self.faults.failing -= 1
            job.emit(TgiGenerationError("Request failed during generation: CUDA out of memory (on demand)"))
        else:
            loop.run_in_executor(None, self.engine.run, job)
        return _Admitted(job=job, events=events)

    async def _write_events(self, request: web.Request, response: web.StreamResponse, admitted: _Admitted):
        drop_after, self.faults.drop_after_tokens = self.faults.drop_after_tokens, None
        index = 0
        while True:
            event = await self._next_event(admitted, wait_s=self.keep_alive_s)
            if event is None:
                await response.write(KEEP_ALIVE)
                continue
            if isinstance(event, Exception):
                await response.write(sse(error_json(str(event), "generation")))
                return
            index += 1
            if drop_after is not None and index > drop_after:
                admitted.job.cancelled.set()
                if request.transport is not None:
                    request.transport.abort()  # the connection dies mid-stream, no final event
                return
            await response.write(stream_event(index, event, admitted.job.params.details))
            if isinstance(event, Finished):
                self.completed += 1
                return

    async def _next_event(self, admitted: _Admitted, wait_s: float | None):
        try:
            return await asyncio.wait_for(admitted.events.get(), wait_s)
        except asyncio.TimeoutError:
            return None

    def _release(self, admitted: _Admitted) -> None:
        admitted.job.cancelled.set()  # a finished job ignores it; an abandoned one stops at its next step
        self.in_flight -= 1

    def _unavailable(self) -> web.Response | None:
        if self.faults.unavailable <= 0:
            return None
        self.faults.unavailable -= 1
        return web.Response(status=503, text="Service Unavailable")


class _Refused(Exception):
    def __init__(self, status: int, body: dict[str, str], *, before_stream: bool = False) -> None:
        super().__init__(body["error"])
        self.status = status
        self.body = body
        self.before_stream = before_stream
