"""Several text-generation-inference servers behind one backend: who gets the next request, who is up.

Each request goes to the healthy server with the fewest requests in flight from this process (the
least recently chosen among equals, so an idle pool still takes turns). A server is taken out when a
request cannot reach it or its `/health` check fails, and comes back when a later check passes; checks
run every `health_interval_s` in the background. Each server's `/info` limits (input and total tokens,
stop sequences) are read when it is first seen healthy, and again on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from model.tgi_client import TgiClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """What a TGI router accepts (its /info): tokens in a prompt, prompt + reply, stop sequences."""

    max_input_tokens: int
    max_total_tokens: int
    max_stop_sequences: int = 4

    @classmethod
    def from_info(cls, info: dict) -> ServerLimits:
        total = int(info["max_total_tokens"])
        return cls(
            max_input_tokens=int(info.get("max_input_tokens") or info.get("max_input_length") or total - 1),
            max_total_tokens=total,
            max_stop_sequences=int(info.get("max_stop_sequences") or 4),
        )


@dataclass(eq=False)
class Replica:
    url: str
    healthy: bool = True
    detail: str = ""
    in_flight: int = 0
    limits: ServerLimits | None = None
    last_chosen: int = 0
    timeout_s: float | None = None
    client: TgiClient = field(init=False)

    def __post_init__(self) -> None:
        # For /health, /info and plain /generate; each stream opens its own connection (model/tgi.py).
        self.client = TgiClient(self.url, timeout=self.timeout_s)

    @property
    def name(self) -> str:
        return display_url(self.url)


class ReplicaPool:
    """The servers of one backend; `start()` checks them all once, then keeps checking."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        health_interval_s: float = 5.0,
        health_timeout_s: float = 3.0,
        request_timeout_s: float | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one TGI URL is needed")
        self.replicas = [Replica(url.rstrip("/"), timeout_s=request_timeout_s) for url in urls]
        self._interval_s = health_interval_s
        self._timeout_s = health_timeout_s
        self._choices = itertools.count(1)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.check_all()
        self._task = asyncio.create_task(self._keep_checking(), name="tgi-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for replica in self.replicas:
            await replica.client.close()

    def pick(self, exclude: set[Replica] | frozenset[Replica] = frozenset()) -> Replica | None:
        """The healthy server with the fewest requests in flight, or None when none is left."""
        candidates = [r for r in self.replicas if r.healthy and r not in exclude]
        if not candidates:
            return None
        chosen = min(candidates, key=lambda r: (r.in_flight, r.last_chosen))
        chosen.last_chosen = next(self._choices)
        return chosen

    @contextlib.contextmanager
    def using(self, replica: Replica) -> Iterator[Replica]:
        replica.in_flight += 1
        try:
            yield replica
        finally:
            replica.in_flight -= 1

    def mark_down(self, replica: Replica, reason: str) -> None:
        if replica.healthy:
            log.warning("model server %s is out of rotation: %s", replica.name, reason)
        replica.healthy, replica.detail = False, reason

    @property
    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    def limits(self) -> ServerLimits | None:
        """The tightest limits among the servers that have reported theirs (a request may go to any)."""
        known = [r.limits for r in self.replicas if r.limits is not None]
        if not known:
            return None
        return ServerLimits(
            max_input_tokens=min(k.max_input_tokens for k in known),
            max_total_tokens=min(k.max_total_tokens for k in known),
            max_stop_sequences=min(k.max_stop_sequences for k in known),
        )

    def describe(self) -> str:
        up = sum(r.healthy for r in self.replicas)
        down = "; ".join(f"{r.name}: {r.detail}" for r in self.replicas if not r.healthy)
        return f"{up} of {len(self.replicas)} model servers answering" + (f" ({down})" if down else "")

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(replica) for replica in self.replicas))

    async def check(self, replica: Replica) -> None:
        """One /health check (and /info while the limits are unknown); updates `replica`."""
        try:
            healthy = await asyncio.wait_for(self._probe(replica), self._timeout_s)
            reason = "" if healthy else "its /health check failed"
        except Exception as error:  # unreachable, timed out, or an answer that is not TGI's
            healthy, reason = False, short_reason(error).replace(replica.url, replica.name)
        if not healthy:
            self.mark_down(replica, reason)
            return
        if not replica.healthy:
            log.info("model server %s is back in rotation", replica.name)
        replica.healthy, replica.detail = True, ""

    async def _probe(self, replica: Replica) -> bool:
        healthy = await replica.client.health_check()
        if healthy and replica.limits is None:
            await self.refresh_limits(replica)
        return healthy

    async def refresh_limits(self, replica: Replica) -> ServerLimits:
        replica.limits = ServerLimits.from_info(await replica.client.get_endpoint_info())
        return replica.limits

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_all()


def display_url(url: str) -> str:
    """The URL without any user:password part, for logs, health details and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def short_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
