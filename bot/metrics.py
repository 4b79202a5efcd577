"""The numbers an operator watches, as Prometheus metrics: queue, latency, speed, outcomes, errors.

Each Application has its own `BotMetrics` with its own `CollectorRegistry` (never prometheus-client's
global one), so two bots in one process, such as a test that restarts the bot, never share a count.
`bot.health_server` serves the registry at /metrics. Where the numbers come from:

- answers waiting for their turn and answers being written: read from the conversation queue at
  each scrape (`watch`);
- time to first token, tokens per second and answers by outcome: from each answer as it is recorded
  (`answer_finished`, called by `bot.answering.assistant_turn`, which every answer passes through);
- Telegram errors by kind and Bot API method: from the bot's client (`bot.telegram_client`), where
  every failed Bot API call passes, whoever made it (deliveries, previews, polling, the error handler);
  errors no handler caught: from the one error handler;
- whatever the model backend reports about itself, read at each scrape (`ModelStatsCollector`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from telegram.error import TelegramError

from bot.conversation_queue import ConversationQueue
from bot.telegram_errors import error_kind
from model.errors import ModelBusy, PromptTooLong, ServiceStopped
from model.types import GenerationResult
from storage.errors import StorageError
from storage.inbox import InboxStore
from storage.types import TurnStatus

log = logging.getLogger(__name__)

PREFIX = "idefics"
FIRST_TOKEN_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 200, 500)
# ServiceStats fields that are two counts of one cache: exported as a ratio too.
HIT_RATIOS = {
    "prefix_cache_hit_ratio": ("prompt_tokens_reused", "prompt_tokens_computed"),
    "image_cache_hit_ratio": ("image_cache_hits", "image_cache_misses"),
}


class BotMetrics:
    """One application's registry and instruments (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        registry = self.registry
        self.answers_waiting = Gauge(
            f"{PREFIX}_answers_waiting",
            "Requests stored and waiting their turn (all processes on this database)",
            registry=registry,
        )
        self.answers_in_flight = Gauge(
            f"{PREFIX}_answers_in_flight", "Answers being worked on now (read, generated, delivered)",
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            f"{PREFIX}_time_to_first_token_seconds", "From sending a prompt to the model to its first token",
            buckets=FIRST_TOKEN_BUCKETS_S, registry=registry,
        )
        self.tokens_per_second = Histogram(
            f"{PREFIX}_tokens_per_second", "Each answer's writing speed after its first token",
            buckets=TOKENS_PER_SECOND_BUCKETS, registry=registry,
        )
        self.answers = Counter(
            f"{PREFIX}_answers", "Answers by how they ended", ["outcome"], registry=registry
        )
        self.model_busy_waits = Counter(
            f"{PREFIX}_model_busy_waits", "Waits because every model server was overloaded",
            registry=registry,
        )
        self.telegram_errors = Counter(
            f"{PREFIX}_telegram_errors", "Bot API calls that failed, by kind of error and method",
            ["kind", "method"], registry=registry,
        )
        self.handler_errors = Counter(
            f"{PREFIX}_handler_errors", "Errors that reached the error handler, by kind", ["kind"],
            registry=registry,
        )
        self.updates_redelivered = Counter(
            f"{PREFIX}_updates_redelivered", "Updates received again and not handled twice", registry=registry
        )

    def watch(self, answers: ConversationQueue, backend: object) -> None:
        """Read the queue and the model backend at each scrape (called once the runtime exists)."""
        self.answers_in_flight.set_function(answers.running_count)
        self.registry.register(ModelStatsCollector(backend))

    async def refresh(self, inbox: InboxStore) -> None:
        """Before a scrape: what waits is in the database (the inbox), read asynchronously here."""
        try:
            self.answers_waiting.set(await inbox.waiting_count())
        except StorageError as error:  # the health check says so; the last figure stays
            log.info("could not count the waiting requests: %s", error)

    def answer_finished(
        self,
        status: TurnStatus,
        error: BaseException | None,
        result: GenerationResult | None,
        busy_waits: int = 0,
    ) -> None:
        self.answers.labels(outcome=answer_outcome(status, error)).inc()
        self.model_busy_waits.inc(busy_waits)
        if result is None or result.time_to_first_token_s is None:
            return
        self.time_to_first_token.observe(result.time_to_first_token_s)
        writing_s = result.total_s - result.time_to_first_token_s
        if result.completion_tokens > 1 and writing_s > 0:
            self.tokens_per_second.observe((result.completion_tokens - 1) / writing_s)

    def telegram_api_error(self, method: str, error: TelegramError) -> None:
        self.telegram_errors.labels(kind=error_kind(error), method=method).inc()

    def handler_error(self, error: BaseException | None) -> None:
        kind = error_kind(error) if isinstance(error, TelegramError) else "internal"
        self.handler_errors.labels(kind=kind).inc()


def answer_outcome(status: TurnStatus, error: BaseException | None) -> str:
    """complete | undelivered | cancelled | model_busy | too_long | model_unavailable | failed."""
    if status is TurnStatus.COMPLETE:
        return "complete"
    if status is TurnStatus.UNDELIVERED:
        return "undelivered"
    if status is TurnStatus.CANCELLED:
        return "cancelled"
    labels = ((ModelBusy, "model_busy"), (PromptTooLong, "too_long"), (ServiceStopped, "model_unavailable"))
    return next((label for kind, label in labels if isinstance(error, kind)), "failed")


class ModelStatsCollector(Collector):
    """What the backend reports about itself, read at each scrape; nothing for what it lacks.

    The in-process service's `stats` (a `ServiceStats` dataclass) becomes one gauge per numeric field,
    `idefics_model_<field>` (cumulative counts only ever grow), its `finished` counts one gauge per
    finish reason, and each pair of cache counts in HIT_RATIOS a hit ratio (`idefics_prefix_cache_hit_ratio`
    once the service reports prompt tokens reused from its prefix cache). A TGI backend's `pool` becomes
    each server's health and requests in flight."""

    def __init__(self, backend: object) -> None:
        self._backend = backend

    def describe(self) -> list[Metric]:
        return []  # the names depend on the backend; nothing to check against the registry's others

    def collect(self) -> Iterator[Metric]:
        try:
            stats = getattr(self._backend, "stats", None)
            if dataclasses.is_dataclass(stats):
                yield from _service_stats(stats)
            pool = getattr(self._backend, "pool", None)
            if pool is not None and hasattr(pool, "replicas"):
                yield from _replica_gauges(pool.replicas)
        except Exception:  # noqa: BLE001 - a scrape must never fail because a backend changed shape
            log.warning("could not read the model backend's statistics", exc_info=True)


def _service_stats(stats: Any) -> Iterator[Metric]:
    values = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield GaugeMetricFamily(f"{PREFIX}_model_{name}", f"The model service's {name}", value=value)
    finished = values.get("finished")
    if isinstance(finished, dict):
        family = GaugeMetricFamily(
            f"{PREFIX}_model_finished", "Generations by finish reason", labels=["reason"]
        )
        for reason, count in finished.items():
            family.add_metric([getattr(reason, "value", str(reason))], count)
        yield family
    for ratio, (hits, misses) in HIT_RATIOS.items():
        if hits in values and misses in values:
            total = values[hits] + values[misses]
            yield GaugeMetricFamily(f"{PREFIX}_{ratio}", f"{hits} / ({hits} + {misses})",
                                    value=values[hits] / total if total else 0.0)


def _replica_gauges(replicas: Any) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        f"{PREFIX}_tgi_server_up", "1 while a TGI server passes its checks", labels=["server"]
    )
    busy = GaugeMetricFamily(
        f"{PREFIX}_tgi_server_requests_in_flight", "Requests this bot has at a TGI server", labels=["server"]
    )
    for replica in replicas:
        up.add_metric([replica.name], 1.0 if replica.healthy else 0.0)
        busy.add_metric([replica.name], replica.in_flight)
    yield up
    yield busy
