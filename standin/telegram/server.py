"""A stand-in for Telegram's Bot API server, for tests that run the real bot against it.

It listens on 127.0.0.1 in the test's event loop and answers python-telegram-bot the way
api.telegram.org does (same paths, JSON shapes, errors, limits, file downloads and long polling), so
the real Application can poll it, or take its updates by webhook (webhooks.py). Tests play users
through it (users.py) and read back what the bot did (observe.py); method handlers live in methods.py
and messages.py.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import string
import time
import traceback
from collections import defaultdict, deque
from typing import Any

from aiohttp import web

from .files import FileStore
from .flood import FloodControl, FloodLimits
from .methods import METHODS
from .observe import Observations
from .state import (ApiCall, ChatHandle, DraftRecord, MessageStore, ServedError, UpdateQueue,
                    UserHandle)
from .users import UserActions
from .webhooks import WebhookDelivery
from .wire import (NOT_FOUND, UNAUTHORIZED, ApiError, error_response, ok_response,
                   read_params)

TOKEN_FORMAT = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
API_PATH = re.compile(r"/bot([^/]*)/([^/]*)")
FILE_PATH = re.compile(r"/file/bot([^/]*)/(.+)")


def make_token(bot_id: int = 7000000001) -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return f"{bot_id}:AA" + "".join(secrets.choice(alphabet) for _ in range(33))


class BotApiStandIn(UserActions, Observations):
    """The whole stand-in: `await start()`, point the bot at `base_url`, play, observe, `stop()`."""

    def __init__(self, token: str | None = None, *, flood_limits: FloodLimits | None = None,
                 bot_first_name: str = "IDEFICS", bot_username: str = "idefics_test_bot"):
        self.token = token or make_token()
        self.bot_user = UserHandle(int(self.token.split(":")[0]), bot_first_name, bot_username,
                                   is_bot=True)
        self.flood_limits = flood_limits or FloodLimits()
        self.flood = FloodControl(self.flood_limits)
        self.flood_429_count = 0
        self.store = MessageStore()
        self.updates = UpdateQueue()
        self.webhook = WebhookDelivery(self.updates)  # setWebhook and what it delivered (webhooks.py)
        self.files = FileStore()
        self.chats: dict[int, ChatHandle] = {}
        self.users: dict[int, UserHandle] = {}
        self.calls: list[ApiCall] = []
        self.served_errors: list[ServedError] = []
        self.draft_records: list[DraftRecord] = []
        self.chat_action_records: list[tuple[int, str]] = []
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.open_callback_queries: set[str] = set()
        self.downloads: list[str] = []
        self.download_delay_s = 0.0  # each file download takes at least this long
        self.internal_errors: list[str] = []  # tracebacks of stand-in bugs; fixtures assert none
        self.started_at = time.time()
        self._query_ids = itertools.count(4_000_000_001)
        self._faults: dict[str, deque[ApiError]] = defaultdict(deque)
        self._outage: tuple[ApiError, frozenset[str] | None] | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self.started_at = time.time()

    async def stop(self) -> None:
        self.updates.close()  # pending long polls answer [] at once
        await self.webhook.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_root(self) -> str:
        if self._port is None:
            raise RuntimeError("the stand-in is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.api_root}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_root}/file/bot"

    @staticmethod
    def now() -> int:
        return int(time.time())

    def fail_next(self, method: str, error_code: int, description: str, *,
                  retry_after: int | None = None, times: int = 1) -> None:
        """Answers the next `times` calls of `method` with this error instead of running them;
        `method` "*" means any method but getUpdates."""
        for _ in range(times):
            self._faults[method.lower()].append(
                ApiError(error_code, description, retry_after=retry_after))

    def start_outage(self, error_code: int = 500, description: str = "Internal Server Error", *,
                     retry_after: int | None = None, methods: set[str] | None = None) -> None:
        """Answers every call of `methods` (default: every method but getUpdates) with this error
        until `end_outage()`: Telegram having a bad few minutes."""
        wanted = None if methods is None else frozenset(method.lower() for method in methods)
        self._outage = (ApiError(error_code, description, retry_after=retry_after), wanted)

    def end_outage(self) -> None:
        self._outage = None

    def _fault_for(self, method: str) -> ApiError | None:
        """The injected error this call gets, if any (single faults first, then an outage)."""
        name = method.lower()
        for queue_name in (name, "*"):
            queue = self._faults[queue_name]
            if queue and (queue_name == name or name != "getupdates"):
                return queue.popleft()
        if self._outage is not None:
            error, methods = self._outage
            if (methods is None and name != "getupdates") or (methods is not None and name in methods):
                return error
        return None

    @property
    def served_429s(self) -> int:
        return sum(1 for error in self.served_errors if error.error_code == 429)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        file_match = FILE_PATH.fullmatch(request.path)
        if file_match and request.method in ("GET", "HEAD"):
            return await self._download(*file_match.groups())
        api_match = API_PATH.fullmatch(request.path)
        if not api_match:
            return error_response(NOT_FOUND)
        token, method = api_match.groups()
        if token != self.token:
            return error_response(UNAUTHORIZED if TOKEN_FORMAT.fullmatch(token) else NOT_FOUND)
        try:
            params = await read_params(request)
        except ApiError as error:
            call = ApiCall(method, {}, time.time())
            self.calls.append(call)
            return self._refuse(call, error, injected=False)
        call = ApiCall(method, params, time.time())
        self.calls.append(call)
        handler = METHODS.get(method.lower())
        if handler is None:
            return self._refuse(call, NOT_FOUND, injected=False)
        fault = self._fault_for(method)
        if fault is not None:
            return self._refuse(call, fault, injected=True)
        try:
            result = await handler(self, params)
        except ApiError as error:
            if request.transport is None or request.transport.is_closing():
                call.status = error.error_code  # e.g. a long poll the client gave up: nobody hears
                return error_response(error)
            return self._refuse(call, error, injected=False)
        except Exception:  # a bug in the stand-in, not in the bot: make it loud
            self.internal_errors.append(traceback.format_exc())
            return self._refuse(call, ApiError(500, "Internal Server Error"), injected=False)
        return ok_response(result)

    def _refuse(self, call: ApiCall, error: ApiError, *, injected: bool) -> web.Response:
        """Records an error answer that the client will receive, and builds it."""
        call.status = error.error_code
        self.served_errors.append(ServedError(
            call.method, error.error_code, error.description, error.retry_after,
            call.params.get("chat_id"), injected))
        return error_response(error)

    async def _download(self, token: str, file_path: str) -> web.Response:
        stored = self.files.by_path(file_path) if token == self.token else None
        if stored is None or stored.download_fails:
            return error_response(NOT_FOUND)
        if self.download_delay_s:  # a slow link, for tests of what happens meanwhile
            await asyncio.sleep(self.download_delay_s)
        self.downloads.append(file_path)
        return web.Response(body=stored.data, content_type="application/octet-stream")
