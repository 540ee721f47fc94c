"""The live status page: what it shows (JSON) and the page itself (HTML, polling that JSON).

:func:`status_snapshot` is :func:`coordinator.status.read_status` (workers,
their state, sessions owned, queues, health records) plus what a person
wants at a glance: each worker's cache hit rate and provider cache-hit share,
the cluster's provider cost and cache-hit share summed over the live
workers, and the recent cluster events (:mod:`cluster.event_log`: pushes,
drains, deaths, recoveries). :data:`STATUS_PAGE_HTML` draws it as a picture
(gateway -> Redis -> one card per worker) and refreshes it every second from
``/status.json``; the HTTP app serves both (:mod:`coordinator.http.observability`).

It shows worker ids, hosts and process ids, never a session key, a message
or a secret.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis

from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from cluster.metric_names import TOKEN_KINDS
from coordinator.status import ClusterStatus, WorkerStatus, read_status

__all__ = ["RECENT_EVENTS", "STATUS_PAGE_HTML", "status_snapshot", "summarize"]

RECENT_EVENTS = 30
"""How many of the newest cluster events the page lists."""

STATUS_PAGE_HTML: str = (
    resources.files("coordinator").joinpath("status_page.html").read_text(encoding="utf-8")
)
"""The page (no external assets: it works on a cluster with no internet)."""


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _worker(w: WorkerStatus) -> dict[str, Any]:
    h = w.health
    row: dict[str, Any] = {
        "id": w.worker_id,
        "state": w.state,
        "heartbeat_age": round(w.heartbeat_age, 2),
        "host": w.host,
        "pid": w.pid,
        "sessions_owned": w.sessions_owned,
        "queued": w.queued,
        "in_flight": w.in_flight,
        "health": h is not None,
    }
    if h is not None:
        tokens = {kind: int(h.provider_tokens.get(kind, 0)) for kind in TOKEN_KINDS}
        prompt = tokens["input"] + tokens["cache_read"] + tokens["cache_write"]
        row.update(
            health_state=h.state,
            cache_size=h.cache_size,
            cache_cap=h.cache_cap,
            cache_hits=h.cache_hits,
            cache_misses=h.cache_misses,
            cache_hit_rate=h.cache_hit_rate,
            memory_rss_bytes=h.memory_rss_bytes,
            memory_budget_bytes=h.memory_budget_bytes,
            cache_memory_evictions=h.cache_memory_evictions,
            turns_running=h.turns_running,
            turns_waiting=h.turns_waiting,
            concurrency=h.concurrency,
            config_version=h.config_version,
            registry_generation=h.registry_generation,
            provider_tokens=tokens,
            provider_cache_hit_share=_share(tokens["cache_read"], prompt),
            provider_cost_usd=h.provider_cost_usd,
        )
    return row


def summarize(status: ClusterStatus) -> dict[str, Any]:
    """The page's data from a status reading (pure: no Redis)."""
    workers = [_worker(w) for w in status.workers]
    tokens = {kind: 0 for kind in TOKEN_KINDS}
    cost = 0.0
    hits = misses = running = 0
    for w in status.workers:
        if w.health is None:
            continue
        for kind in TOKEN_KINDS:
            tokens[kind] += int(w.health.provider_tokens.get(kind, 0))
        cost += w.health.provider_cost_usd
        hits += w.health.cache_hits
        misses += w.health.cache_misses
        running += w.health.turns_running
    prompt = tokens["input"] + tokens["cache_read"] + tokens["cache_write"]
    return {
        "namespace": status.namespace,
        "now": status.now,
        "config_version": status.config_version,
        "registry_generation": status.registry_generation,
        "queued": status.queued,
        "in_flight": status.in_flight,
        "turns_running": running,
        "dead_letters": status.dead_letters,
        "cache_hit_rate": _share(hits, hits + misses),
        "provider": {
            "tokens": tokens,
            "cache_hit_share": _share(tokens["cache_read"], prompt),
            "cost_usd": round(cost, 6),
        },
        "workers": workers,
        "tenants": [t.as_dict() for t in status.tenants],
    }


def status_snapshot(client: redis.Redis, keyspace: Keyspace) -> dict[str, Any]:
    """Everything the status page shows, read from Redis (a few round trips per worker)."""
    data = summarize(read_status(client, keyspace))
    data["events"] = [e.as_dict() for e in ClusterEventLog(client, keyspace).recent(RECENT_EVENTS)]
    return data
