"""Prometheus metrics of one Core, in its own registry (never the process-wide default one,
so tests can run many Cores side by side). Served as text at /metrics by bot/web.py.

Each count is taken at the one place the event happens: `send()` for upstream calls, the
tracker's terminal transition for jobs, the notifier for deliveries. Job counts by model
and state are read from the store at scrape time, so they survive restarts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.errors import GatewayError
from bot.models import Job, JobState

if TYPE_CHECKING:
    from bot.replicas import Fleet

__all__ = ["CONTENT_TYPE", "METRICS", "JobCounts", "Metrics", "ShardsUp", "UpstreamObserver"]

# The classic text exposition format; every Prometheus version scrapes it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

JobCounts = Callable[[], Awaitable[Iterable[tuple[str, str, int]]]]
UpstreamObserver = Callable[[str, GatewayError | None], None]
FleetReader = Callable[[], Awaitable["Fleet"]]
ShardsUp = Callable[[], Mapping[int, bool]]  # each Discord shard a source runs: up or not

_UPSTREAM_DONE = (JobState.SUCCEEDED, JobState.FAILED, JobState.REFUNDED)
SUBMIT_TO_DONE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
DONE_TO_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


@dataclass(frozen=True, slots=True)
class _Metric:
    """One metric: its type, name, help text and labels (a histogram's buckets too)."""

    kind: type[Counter | Gauge | Histogram]
    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    def build(self, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
        if self.kind is Histogram:
            return Histogram(
                self.name, self.doc, self.labels, buckets=self.buckets, registry=registry
            )
        return self.kind(self.name, self.doc, self.labels, registry=registry)


# Every metric, by the attribute of `Metrics` that holds it.
METRICS = {
    "jobs": _Metric(
        Gauge, "genrelay_jobs", "Jobs in the store, by model and state", ("model", "state")
    ),
    "jobs_finished": _Metric(
        Counter,
        "genrelay_jobs_finished",
        "Jobs this process saw reach a terminal state",
        ("provider", "model", "state"),
    ),
    "upstream_requests": _Metric(
        Counter,
        "genrelay_upstream_requests",
        "Calls to a gateway, by endpoint",
        ("provider", "endpoint"),
    ),
    "upstream_errors": _Metric(
        Counter,
        "genrelay_upstream_errors",
        "Gateway calls that failed, by endpoint and error",
        ("provider", "endpoint", "error"),
    ),
    "submit_to_done": _Metric(
        Histogram,
        "genrelay_submit_to_upstream_done_seconds",
        "From submitting a job to seeing the upstream finish it",
        ("provider", "model"),
        SUBMIT_TO_DONE_BUCKETS,
    ),
    "done_to_delivery": _Metric(
        Histogram,
        "genrelay_upstream_done_to_delivery_seconds",
        "From seeing the upstream finish a job to the chat accepting the result",
        ("platform",),
        DONE_TO_DELIVERY_BUCKETS,
    ),
    "deliveries": _Metric(
        Counter,
        "genrelay_deliveries",
        "Finished jobs handed to a chat, by platform and outcome",
        ("platform", "outcome"),
    ),
    "delivery_retries": _Metric(
        Counter,
        "genrelay_delivery_retries",
        "Deliveries that failed and were scheduled again",
        ("platform",),
    ),
    "limits_hit": _Metric(
        Counter,
        "genrelay_limits_hit",
        "Requests refused by a community limit, by limit",
        ("limit",),
    ),
    "webhooks": _Metric(
        Counter,
        "genrelay_webhooks",
        "Webhook calls, by provider and outcome (accepted, unknown)",
        ("provider", "outcome"),
    ),
    "replica": _Metric(
        Gauge, "genrelay_replica", "This process: its replica name (host:pid)", ("replica",)
    ),
    "replicas": _Metric(
        Gauge, "genrelay_replicas", "Replicas (`genrelay run` processes) that still beat", ()
    ),
    "heartbeat_age": _Metric(
        Gauge,
        "genrelay_replica_heartbeat_age_seconds",
        "Since each process sharing the store last wrote its heartbeat",
        ("replica", "role"),
    ),
    "lease_held": _Metric(
        Gauge,
        "genrelay_lease_held",
        "Platform connections' leases held now, by the replica holding each",
        ("lease", "replica"),
    ),
    "lease_held_seconds": _Metric(
        Gauge,
        "genrelay_lease_held_seconds",
        "How long each lease held now has been held by its holder",
        ("lease", "replica"),
    ),
    "discord_shard_up": _Metric(
        Gauge,
        "genrelay_discord_shard_up",
        "Discord gateway shards this process runs: 1 READY, 0 connecting or disconnected",
        ("shard",),
    ),
}


class Metrics:
    """Every metric genrelay exports (`METRICS`). Methods are cheap and never raise into the
    caller."""

    jobs: Gauge
    jobs_finished: Counter
    upstream_requests: Counter
    upstream_errors: Counter
    submit_to_done: Histogram
    done_to_delivery: Histogram
    deliveries: Counter
    delivery_retries: Counter
    limits_hit: Counter
    webhooks: Counter
    replica: Gauge
    replicas: Gauge
    heartbeat_age: Gauge
    lease_held: Gauge
    lease_held_seconds: Gauge
    discord_shard_up: Gauge

    def __init__(
        self,
        *,
        job_counts: JobCounts | None = None,
        providers: Collection[str] = (),
        fleet: FleetReader | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._job_counts = job_counts
        self._fleet = fleet
        self.providers = set(providers)
        self._shards: dict[int, ShardsUp] = {}  # by id() of the adapter that runs them
        for attribute, metric in METRICS.items():
            setattr(self, attribute, metric.build(self.registry))

    # -- upstream ----------------------------------------------------------------------------

    def upstream(self, provider: str, endpoint: str, error: GatewayError | None) -> None:
        self.upstream_requests.labels(provider, endpoint).inc()
        if error is not None:
            self.upstream_errors.labels(provider, endpoint, error.code).inc()

    def observer(self, provider: str) -> UpstreamObserver:
        """What a gateway hands to `send()` to count its calls."""

        def observe(endpoint: str, error: GatewayError | None) -> None:
            self.upstream(provider, endpoint, error)

        return observe

    # -- jobs --------------------------------------------------------------------------------

    def job_finished(self, job: Job, provider: str) -> None:
        self.jobs_finished.labels(provider, job.model, job.state.value).inc()
        if (
            job.state in _UPSTREAM_DONE
            and job.submitted_at is not None
            and job.finished_at is not None
        ):
            self.submit_to_done.labels(provider, job.model).observe(
                max(job.finished_at - job.submitted_at, 0.0)
            )

    # -- deliveries --------------------------------------------------------------------------

    def delivered(self, job: Job) -> None:
        platform = job.origin.platform
        self.deliveries.labels(platform, "delivered").inc()
        if job.finished_at is not None and job.delivered_at is not None:
            self.done_to_delivery.labels(platform).observe(
                max(job.delivered_at - job.finished_at, 0.0)
            )

    def delivery_failed(self, job: Job, *, retrying: bool) -> None:
        platform = job.origin.platform
        if retrying:
            self.delivery_retries.labels(platform).inc()
        else:
            self.deliveries.labels(platform, "undeliverable").inc()

    # -- limits and webhooks -----------------------------------------------------------------

    def limit_hit(self, limit: str) -> None:
        """A request refused by a community limit (`user_daily_images`, `chat_budget`...)."""
        self.limits_hit.labels(limit).inc()

    def webhook(self, provider: str, outcome: str) -> None:
        # The provider comes from a URL anyone can call: never let it grow the label set.
        label = provider if provider in self.providers else "other"
        self.webhooks.labels(label, outcome).inc()

    # -- Discord shards ----------------------------------------------------------------------

    def watch_shards(self, owner: object, shards_up: ShardsUp | None) -> None:
        """Report the shards `owner` (an adapter) runs at each scrape; None: no longer."""
        if shards_up is None:
            self._shards.pop(id(owner), None)
        else:
            self._shards[id(owner)] = shards_up

    # -- exposition --------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The text exposition, with job counts, replicas and leases fresh from the store."""
        if self._job_counts is not None:
            rows = list(await self._job_counts())
            self.jobs.clear()
            for model, state, count in rows:
                self.jobs.labels(model, state).set(count)
        if self._fleet is not None:
            self._show_fleet(await self._fleet())
        self.discord_shard_up.clear()
        for shards_up in list(self._shards.values()):
            for shard, up in shards_up().items():
                self.discord_shard_up.labels(str(shard)).set(1 if up else 0)
        return generate_latest(self.registry)

    def _show_fleet(self, fleet: Fleet) -> None:
        for gauge in (self.replica, self.heartbeat_age, self.lease_held, self.lease_held_seconds):
            gauge.clear()
        self.replica.labels(fleet.me).set(1)
        self.replicas.set(len(fleet.live("run")))
        for row in fleet.replicas:
            age = max(fleet.now - row.heartbeat_at, 0.0)
            self.heartbeat_age.labels(row.name, fleet.role(row)).set(age)
        for lease in fleet.held():
            self.lease_held.labels(lease.name, lease.holder).set(1)
            held_for = max(fleet.now - lease.acquired_at, 0.0)
            self.lease_held_seconds.labels(lease.name, lease.holder).set(held_for)
