"""A round-robin load balancer for the tests: one webhook URL in front of several bot processes.

What a deployment puts between Telegram and N bot processes (nginx `upstream`, a cloud load
balancer, compose's service DNS): each POST goes to the next target in turn, path, headers and body
unchanged, and the target's answer goes back. Like nginx with its defaults, a POST is never retried
on another target when the first one fails (POST is not idempotent): a refused connection or a
broken answer becomes a 502, and Telegram sends the update again later, which round robin then
hands to the next process.

Tests make it lose answers (`lose_first_answer`): the process handled the update and answered 2xx,
but the balancer tells Telegram 504, as a proxy whose read timeout ran out would. Telegram then
delivers the same update to another process, which must recognise it.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

FORWARDED_HEADERS = ("Content-Type", "X-Telegram-Bot-Api-Secret-Token")


@dataclass(frozen=True)
class Forwarded:
    """One POST that passed the balancer."""

    update: dict | None  # the body, when it is a JSON object (an update)
    target: str
    target_status: int | None  # None: the target could not be reached or broke off
    answered: int  # what the balancer answered the sender

    @property
    def update_id(self) -> int | None:
        value = (self.update or {}).get("update_id")
        return value if isinstance(value, int) else None

    @property
    def took_it(self) -> bool:
        """The target answered 2xx (whatever the balancer then told the sender)."""
        return self.target_status is not None and 200 <= self.target_status < 300


class RoundRobinBalancer:
    """`await start()`, give `url_for(path)` to Telegram, the targets' base URLs to the processes."""

    def __init__(self, targets: Sequence[str], *, timeout_s: float = 30.0) -> None:
        self.targets = [target.rstrip("/") for target in targets]
        self.timeout_s = timeout_s
        self.forwarded: list[Forwarded] = []
        # update id -> whether its first 2xx answer is to be lost on the way back
        self.lose_first_answer: Callable[[int], bool] = lambda update_id: False
        self._next = itertools.cycle(range(len(self.targets)))
        self._lost: set[int] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def served_by(self, update_id: int) -> list[str]:
        """The targets that answered this update 2xx, in order."""
        return [f.target for f in self.forwarded if f.update_id == update_id and f.took_it]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listening = socket.create_server(("127.0.0.1", 0))
        self.port = listening.getsockname()[1]
        await web.SockSite(self._runner, listening).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> RoundRobinBalancer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        update = _json_object(body)
        update_id = update.get("update_id") if update else None
        target = self.targets[next(self._next)]
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        try:
            async with self._session.post(target + request.path_qs, data=body, headers=headers) as answer:
                status, answer_body = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError):
            self.forwarded.append(Forwarded(update, target, None, 502))
            return web.Response(status=502, text="Bad Gateway")
        answered = status
        if 200 <= status < 300 and isinstance(update_id, int) and update_id not in self._lost \
                and self.lose_first_answer(update_id):
            self._lost.add(update_id)
            answered = 504
        self.forwarded.append(Forwarded(update, target, status, answered))
        if answered == 504:
            return web.Response(status=504, text="Gateway Timeout")
        return web.Response(status=status, body=answer_body, content_type="application/json")


def _json_object(body: bytes) -> dict | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
