"""Operator routes of the HTTP app: Prometheus ``/metrics`` and the live status page.

* ``GET /metrics``: this gateway's request counters and durations
  (:mod:`coordinator.metrics`); scrape it on every replica.
* ``GET /metrics/cluster``: the cluster's state read from Redis at scrape
  time, the same on every replica (scrape one); Redis unreachable gives
  ``agent_cluster_up 0``, never an error.
* ``GET /status``: the status page (:mod:`coordinator.status_page`), a
  picture of the cluster refreshed every second from
* ``GET /status.json``: workers and their state, sessions per worker, cache
  hit rates, turns running, provider cache-hit share and cost, recent events.

Like ``/healthz`` they need no API key: they show worker ids, hosts and
counts, never a session key, a message or a secret. Expose them on the
internal network only (the Kubernetes Service in ``deploy/`` is ClusterIP).

The app calls :func:`instrument` once when it is built (the middleware counts
every request) and adds :func:`observability_routes`.

Reading the cluster costs a few Redis round trips per worker, so one reading
serves every page viewer and scraper of this instance for :data:`READ_EVERY`
seconds: ten open status pages cost what one does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cluster.event_log import ClusterEvent, ClusterEventLog
from coordinator.http.context import gateway
from coordinator.metrics import (
    CoordinatorMetrics,
    MetricsMiddleware,
    cluster_exposition,
    exposition,
    recently_dead,
)
from coordinator.status import ClusterStatus, read_status
from coordinator.status_page import STATUS_PAGE_HTML, status_snapshot

__all__ = ["instrument", "observability_routes"]

log = logging.getLogger("coordinator.http.observability")

_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

READ_EVERY = 1.0
"""Seconds one reading of the cluster is reused by this instance's pages and scrapes."""

T = TypeVar("T")


async def _recent(request: Request, name: str, read: Callable[[], T]) -> T:
    """``read()`` on the gateway's threads, or its result from less than READ_EVERY ago."""
    state = request.app.state
    cache: dict[str, tuple[float, Any]] | None = getattr(state, "observability_reads", None)
    if cache is None:
        cache = state.observability_reads = {}
    hit = cache.get(name)
    if hit is not None and time.monotonic() - hit[0] < READ_EVERY:
        value: T = hit[1]
        return value
    value = await gateway(request).run(read)
    cache[name] = (time.monotonic(), value)
    return value


def instrument(app: Starlette, metrics: CoordinatorMetrics | None = None) -> CoordinatorMetrics:
    """Count every request of ``app`` (call before it starts) in ``app.state.metrics``."""
    made = metrics if metrics is not None else CoordinatorMetrics()
    app.state.metrics = made
    app.add_middleware(MetricsMiddleware, metrics=made)
    return made


def _metrics(request: Request) -> CoordinatorMetrics:
    made = getattr(request.app.state, "metrics", None)
    if not isinstance(made, CoordinatorMetrics):
        made = request.app.state.metrics = CoordinatorMetrics()
    return made


# Enough events to reach back DEAD_VISIBLE_SECONDS on a busy cluster's log.
_EVENTS_READ = 200


async def metrics(request: Request) -> Response:
    """Prometheus text format: this instance's requests."""
    return Response(exposition(_metrics(request)), media_type=_PROMETHEUS_TEXT)


async def cluster_metrics(request: Request) -> Response:
    """Prometheus text format: the cluster as Redis shows it (the same on every instance)."""
    gw = gateway(request)

    def read() -> tuple[ClusterStatus, list[ClusterEvent]] | None:
        try:
            status = read_status(gw.coordinator.client, gw.keyspace)
            events = ClusterEventLog(gw.coordinator.client, gw.keyspace).recent(_EVENTS_READ)
        except redis.RedisError as exc:
            log.warning("/metrics/cluster: cannot read the cluster from Redis: %s", exc)
            return None
        return status, events

    reading = await _recent(request, "cluster", read)
    if reading is None:
        return Response(cluster_exposition(None), media_type=_PROMETHEUS_TEXT)
    status, events = reading
    dead = sorted(recently_dead(events, status))
    return Response(cluster_exposition(status, dead), media_type=_PROMETHEUS_TEXT)


async def status_page(_request: Request) -> Response:
    """The live status page (it polls ``status.json``)."""
    return HTMLResponse(STATUS_PAGE_HTML, headers={"Cache-Control": "no-store"})


async def status_json(request: Request) -> Response:
    """What the status page shows; 503 with a reason when Redis cannot be read."""
    gw = gateway(request)
    try:
        data = await _recent(
            request, "snapshot", lambda: status_snapshot(gw.coordinator.client, gw.keyspace)
        )
    except redis.RedisError as exc:
        return JSONResponse(
            {"error": f"cannot read the cluster from Redis: {type(exc).__name__}"}, status_code=503
        )
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


def observability_routes() -> list[BaseRoute]:
    """``/metrics``, ``/metrics/cluster``, ``/status`` and ``/status.json``."""
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/metrics/cluster", cluster_metrics, methods=["GET"]),
        Route("/status", status_page, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
    ]
