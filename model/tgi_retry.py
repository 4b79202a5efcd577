"""When one request to the TGI servers is tried again, where, and when it is given up.

A request that no server could take is retried: first on the other servers (one that is overloaded,
unreachable or broke off is skipped for the rest of this request), and once every server has said it is
overloaded, after a wait that doubles each time (`RetryPolicy`), until the waits are used up and the
request ends with `ModelBusy`. Only requests that have shown no text yet are retried at all: a reader
never sees an answer start twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.errors import ModelBusy
from model.tgi_replicas import Replica


@dataclass(frozen=True)
class RetryPolicy:
    first_wait_s: float = 1.0
    factor: float = 2.0
    max_wait_s: float = 8.0
    max_waits: int = 5  # 1 + 2 + 4 + 8 + 8 s: about half a minute of "busy" before giving up


@dataclass
class RequestAttempts:
    """One request's record: the servers it should not go back to (this round) and its waits so far."""

    policy: RetryPolicy
    overloaded: set[Replica] = field(default_factory=set)
    failed: set[Replica] = field(default_factory=set)
    waits: int = 0

    @property
    def excluded(self) -> frozenset[Replica]:
        return frozenset(self.overloaded | self.failed)

    def next_wait(self) -> float:
        """The wait before the next round; raises `ModelBusy` when the policy's waits are used up."""
        if self.waits >= self.policy.max_waits:
            raise ModelBusy(
                "The model servers stayed overloaded for too long, so this request was given up. "
                "Try again in a minute."
            )
        wait = min(self.policy.first_wait_s * self.policy.factor**self.waits, self.policy.max_wait_s)
        self.waits += 1
        self.overloaded.clear()  # a new round: the busy servers may have room by now
        return wait
