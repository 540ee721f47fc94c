"""Prometheus metrics of a coordinator (the HTTP gateway), defined on a registry passed in.

Two parts, served at two paths by the HTTP app so that a sum over
Prometheus targets never counts anything twice:

* ``/metrics``, :class:`CoordinatorMetrics`: what this gateway instance saw,
  counted by an ASGI middleware (:class:`MetricsMiddleware`): requests by
  route template (``/v1/sessions/{key}/messages``, without Starlette's
  converter syntax) and status, and their duration (for a message and
  ``/v1/chat/completions`` that is the turn's latency as the caller sees it:
  queue wait, the turn, the reply). Scrape it on every replica.
* ``/metrics/cluster``, :func:`cluster_families`: the cluster as Redis shows
  it at scrape time (:func:`coordinator.status.read_status`): workers by
  state, sessions owned, turns running and queued, dead letters, the
  published config version and registry generation, each worker's cache and
  provider figures from its health record, and each tenant's usage (turns,
  tokens by kind, estimated cost) and turns in flight. Every replica reports the same
  values: scrape it through one target (the Service), not per replica.

A dead worker is pruned by the survivor that recovers it within a heartbeat
or two, which is shorter than a scrape interval; ``workers{state="dead"}``
therefore also counts workers whose ``worker_dead`` event is less than
:data:`DEAD_VISIBLE_SECONDS` old and that have not registered again.

Nothing uses the module-level default registry: tests and an embedded
cluster build as many as they like.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.event_log import ClusterEvent
from cluster.metric_names import LATENCY_BUCKETS, PREFIX, TOKEN_KINDS
from coordinator.status import ClusterStatus

__all__ = [
    "DEAD_VISIBLE_SECONDS",
    "CoordinatorMetrics",
    "MetricsMiddleware",
    "cluster_exposition",
    "cluster_families",
    "exposition",
    "recently_dead",
    "route_label",
    "tenant_families",
]

DEAD_VISIBLE_SECONDS = 300.0
"""How long a recovered (pruned) worker still counts in ``workers{state="dead"}``."""

_CONVERTER = re.compile(r"\{([^{}:]+):[^{}]+\}")


def route_label(path: str) -> str:
    """A route's template as a label value: ``/v1/sessions/{key:session_key}`` ->
    ``/v1/sessions/{key}``."""
    return _CONVERTER.sub(r"{\1}", path)


def recently_dead(
    events: Iterable[ClusterEvent], status: ClusterStatus, *, window: float = DEAD_VISIBLE_SECONDS
) -> set[str]:
    """Workers pruned as dead less than ``window`` seconds ago and not registered since.

    Args:
        events: Recent cluster events (any order).
        status: The cluster read at the same time (its ``now`` is Redis' clock,
            the clock event times are on).
        window: Seconds a death stays visible.
    """
    registered = {w.worker_id for w in status.workers}
    return {
        e.worker
        for e in events
        if e.kind == "worker_dead"
        and e.worker
        and e.worker not in registered
        and status.now - e.at < window
    }


class CoordinatorMetrics:
    """HTTP request counters and durations of one gateway instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Define the metrics on ``registry`` (a fresh one when omitted)."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response (a streamed "
            "response: to its last event).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.duration.labels(route=route).observe(max(0.0, seconds))


class _StatusRecorder:
    """The ``send`` a request's app gets: passes each message on, keeping the status sent
    (500 if none was); a slotted object, lighter than a closure and its cell, since a
    waiting caller holds it for as long as it waits."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        return self.send(message)


class MetricsMiddleware:
    """Pure ASGI middleware feeding :class:`CoordinatorMetrics` (streaming-safe)."""

    def __init__(self, app: ASGIApp, metrics: CoordinatorMetrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        recorder = _StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            route = scope.get("route")
            # The template, never the raw path: a session key must not become a label value.
            template = getattr(route, "path", None) if route is not None else None
            self.metrics.observe(
                str(scope.get("method", "GET")),
                route_label(str(template)) if template else "unmatched",
                recorder.status,
                time.monotonic() - started,
            )


def cluster_families(status: ClusterStatus | None, dead: Sequence[str] = ()) -> list[Metric]:
    """The cluster's state as metric families (``agent_cluster_up`` 0 when Redis could not be read).

    Args:
        status: The cluster read from Redis, ``None`` when it could not be read.
        dead: Workers pruned as dead recently (:func:`recently_dead`), counted
            as ``dead`` on top of the registered workers whose heartbeat expired.
    """
    up = GaugeMetricFamily(
        f"{PREFIX}_up", "1 when the coordinator could read the cluster from Redis."
    )
    up.add_metric([], 0.0 if status is None else 1.0)
    if status is None:
        return [up]
    workers = GaugeMetricFamily(
        f"{PREFIX}_workers",
        f"Workers by state; dead: heartbeat expired, or recovered less than "
        f"{DEAD_VISIBLE_SECONDS:g}s ago.",
        labels=["state"],
    )
    for state in ("active", "draining", "dead"):
        count = sum(1 for w in status.workers if w.state == state)
        workers.add_metric([state], float(count + (len(dead) if state == "dead" else 0)))
    families: list[Metric] = [up, workers]
    for name, doc, value in (
        ("queued_turns", "Turn jobs waiting on the workers' queues.", status.queued),
        ("inflight_turns", "Turn jobs claimed by workers and not completed.", status.in_flight),
        (
            "dead_letters",
            "Entries in the dead-letter list (turns no worker can run).",
            status.dead_letters,
        ),
        ("published_config_version", "The cluster config version in Redis.", status.config_version),
        (
            "published_config_version_lost",
            "Highest config version a worker applied before Redis lost it (0: none).",
            status.config_version_lost,
        ),
        (
            "published_registry_generation",
            "The tool registry generation in Redis.",
            status.registry_generation,
        ),
    ):
        families.append(GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value)))
    per_worker: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        "sessions": GaugeMetricFamily(
            f"{PREFIX}_worker_sessions_owned", "Sessions each worker owns.", labels=["worker"]
        ),
        "running": GaugeMetricFamily(
            f"{PREFIX}_worker_turns_running",
            "Turns running on each worker (its last health record).",
            labels=["worker"],
        ),
        "agents": GaugeMetricFamily(
            f"{PREFIX}_worker_cache_agents", "Agents cached on each worker.", labels=["worker"]
        ),
        "hits": CounterMetricFamily(
            f"{PREFIX}_worker_cache_hits",
            "Cache hits of each worker since its start.",
            labels=["worker"],
        ),
        "misses": CounterMetricFamily(
            f"{PREFIX}_worker_cache_misses",
            "Cache misses of each worker since its start.",
            labels=["worker"],
        ),
        "cost": CounterMetricFamily(
            f"{PREFIX}_worker_provider_cost_dollars",
            "Estimated provider cost of each worker's turns since its start.",
            labels=["worker"],
        ),
    }
    tokens = CounterMetricFamily(
        f"{PREFIX}_worker_provider_tokens",
        "Provider tokens of each worker's turns since its start, by kind.",
        labels=["worker", "kind"],
    )
    for w in status.workers:
        per_worker["sessions"].add_metric([w.worker_id], float(w.sessions_owned))
        h = w.health
        if h is None:
            continue
        per_worker["running"].add_metric([w.worker_id], float(h.turns_running))
        per_worker["agents"].add_metric([w.worker_id], float(h.cache_size))
        per_worker["hits"].add_metric([w.worker_id], float(h.cache_hits))
        per_worker["misses"].add_metric([w.worker_id], float(h.cache_misses))
        per_worker["cost"].add_metric([w.worker_id], float(h.provider_cost_usd))
        for kind in TOKEN_KINDS:
            tokens.add_metric([w.worker_id, kind], float(h.provider_tokens.get(kind, 0)))
    return [*families, *per_worker.values(), tokens, *tenant_families(status)]


def tenant_families(status: ClusterStatus) -> list[Metric]:
    """Each tenant's usage as recorded in Redis by the workers (same on every instance)."""
    turns = CounterMetricFamily(
        f"{PREFIX}_tenant_turns", "Committed turns of each tenant.", labels=["tenant"]
    )
    tokens = CounterMetricFamily(
        f"{PREFIX}_tenant_provider_tokens",
        "Provider tokens of each tenant's committed turns, by kind.",
        labels=["tenant", "kind"],
    )
    cost = CounterMetricFamily(
        f"{PREFIX}_tenant_provider_cost_dollars",
        "Estimated provider cost of each tenant's committed turns at list price.",
        labels=["tenant"],
    )
    in_flight = GaugeMetricFamily(
        f"{PREFIX}_tenant_turns_in_flight",
        "Turns of each tenant accepted and not answered (counted under a turns-in-flight limit).",
        labels=["tenant"],
    )
    for t in status.tenants:
        turns.add_metric([t.tenant], float(t.turns))
        for kind in TOKEN_KINDS:
            tokens.add_metric([t.tenant, kind], float(t.tokens.get(f"{kind}_tokens", 0)))
        cost.add_metric([t.tenant], t.cost_usd)
        in_flight.add_metric([t.tenant], float(t.in_flight))
    return [turns, tokens, cost, in_flight]


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(metrics: CoordinatorMetrics) -> bytes:
    """The ``/metrics`` body: this instance's request counters and durations."""
    return generate_latest(metrics.registry)


def cluster_exposition(status: ClusterStatus | None, dead: Sequence[str] = ()) -> bytes:
    """The ``/metrics/cluster`` body: the cluster's state (see :func:`cluster_families`)."""
    cluster = CollectorRegistry(auto_describe=False)
    cluster.register(_Families(cluster_families(status, dead)))
    return generate_latest(cluster)
