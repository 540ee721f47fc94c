"""A worker's health, written to Redis at every heartbeat so it is readable from outside.

A deploy probe (``agent-cluster health WORKER``), ``agent-cluster status`` and
``agent-cluster session KEY`` read what a worker is doing without talking to
its process: the heartbeat thread calls :func:`beat_with_health` once per
beat, which sends a :class:`~cluster.health_record.HealthRecord` (JSON) with the heartbeat into the
worker's health hash and keeps the set of its cached session keys next to it,
both expiring after the heartbeat TTL, so a worker that stops beating
(killed, paused, cut off) loses its record within the TTL on Redis' own clock.

Cost per beat: the heartbeat script's one round trip (it stores the record).
The cached-sessions set is rewritten (a second round trip) only when the
cache's contents changed since the last write, judged by a digest stored in
the same hash, so a worker holding many agents does not resend them every beat.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import redis

from cluster.health_record import HealthRecord
from cluster.keys import Keyspace
from cluster.membership import Beat, RedisMembership, WorkerState
from cluster.redis_text import text
from worker.metrics import ProviderTotals

__all__ = [
    "HealthSource",
    "HealthWriter",
    "beat_with_health",
    "cached_digest",
    "record_of",
]

# When this process loaded the worker code: its start, as far as a probe cares.
PROCESS_STARTED = time.time()

# Members per SADD when the cached-sessions set is rewritten.
_SADD_CHUNK = 1000


def cached_digest(session_keys: Sequence[str]) -> str:
    """A digest of a set of session keys (order-insensitive), to skip unchanged rewrites."""
    hasher = hashlib.sha256()
    for key in sorted(session_keys):
        hasher.update(key.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
    return hasher.hexdigest()[:32]


class HealthWriter:
    """Writes one worker's health hash and cached-sessions set (keys in ``cluster/keys.py``)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, ttl: float) -> None:
        """Bind to a bytes client; ``ttl`` is the heartbeat TTL in seconds."""
        self._client = client
        self._keys = keyspace
        self._ttl_ms = max(1, int(ttl * 1000))

    def write(self, record: HealthRecord, cached: Sequence[str]) -> bool:
        """Store ``record`` and, if it changed, the set of cached session keys.

        (A running worker stores its record with its heartbeat instead, then
        calls :meth:`sync_cached`.)

        Returns:
            Whether the cached-sessions set was rewritten.
        """
        health = self._keys.worker_health(record.worker_id)
        members = self._keys.worker_cached(record.worker_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(health, "record", record.to_json())
        pipe.hget(health, "cached")
        pipe.pexpire(health, self._ttl_ms)
        pipe.pexpire(members, self._ttl_ms)
        _, stored, _, _ = pipe.execute()
        return self.sync_cached(record.worker_id, cached, None if stored is None else text(stored))

    def sync_cached(self, worker_id: str, cached: Sequence[str], stored: str | None) -> bool:
        """Rewrite the worker's cached-sessions set unless ``stored`` (its digest) is current.

        Returns:
            Whether the set was rewritten (no round trip when it was current).
        """
        health = self._keys.worker_health(worker_id)
        members = self._keys.worker_cached(worker_id)
        digest = cached_digest(cached)
        if stored == digest:
            return False
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(members)
        for start in range(0, len(cached), _SADD_CHUNK):
            pipe.sadd(members, *cached[start : start + _SADD_CHUNK])
        pipe.hset(health, "cached", digest)
        pipe.pexpire(members, self._ttl_ms)
        pipe.pexpire(health, self._ttl_ms)
        pipe.execute()
        return True


class _CacheFigures(Protocol):
    def metrics(self) -> Mapping[str, Any]: ...

    def keys(self) -> list[str]: ...


class _TurnFigures(Protocol):
    @property
    def concurrency(self) -> int: ...

    def running(self) -> int: ...

    def in_flight(self) -> int: ...


class _AppliedConfig(Protocol):
    @property
    def config_version(self) -> int: ...

    @property
    def registry_generation(self) -> int: ...

    @property
    def lost_version(self) -> int: ...


class _ProviderUsage(Protocol):
    def provider_totals(self) -> ProviderTotals: ...


class HealthSource(Protocol):
    """What a health record is read from: a running worker's public parts."""

    @property
    def worker_id(self) -> str: ...

    @property
    def instance(self) -> str: ...

    @property
    def known_state(self) -> WorkerState | None: ...

    @property
    def cache(self) -> _CacheFigures: ...

    @property
    def executor(self) -> _TurnFigures: ...

    @property
    def config(self) -> _AppliedConfig: ...

    @property
    def metrics(self) -> _ProviderUsage: ...


def record_of(worker: HealthSource, state: WorkerState | None) -> HealthRecord:
    """Build the health record of a running worker from its public parts."""
    metrics: Mapping[str, Any] = worker.cache.metrics()
    running = worker.executor.running()
    usage = worker.metrics.provider_totals()
    return HealthRecord(
        worker_id=worker.worker_id,
        instance=worker.instance,
        state="rejoining" if state is None else WorkerState(state).value,
        pid=os.getpid(),
        host=socket.gethostname(),
        started=PROCESS_STARTED,
        written_at=time.time(),
        cache_size=int(metrics.get("size", 0)),
        cache_cap=int(metrics.get("cap", 0)),
        cache_hits=int(metrics.get("hits", 0)),
        cache_misses=int(metrics.get("misses", 0)),
        cache_memory_bytes=int(metrics.get("memory_bytes", 0)),
        turns_running=running,
        turns_waiting=max(0, worker.executor.in_flight() - running),
        concurrency=worker.executor.concurrency,
        config_version=worker.config.config_version,
        registry_generation=worker.config.registry_generation,
        provider_tokens={
            "input": usage.input_tokens,
            "cache_read": usage.cache_read_tokens,
            "cache_write": usage.cache_write_tokens,
            "output": usage.output_tokens,
        },
        provider_cost_usd=round(usage.cost_usd, 6),
        config_version_lost=worker.config.lost_version,
        memory_rss_bytes=int(metrics.get("rss_bytes") or 0),
        memory_budget_bytes=int(metrics.get("rss_budget") or 0),
        cache_memory_evictions=int(dict(metrics.get("evictions") or {}).get("memory", 0)),
    )


def beat_with_health(
    worker: HealthSource, *, membership: RedisMembership, writer: HealthWriter
) -> Beat:
    """Beat ``worker``'s heartbeat with its health record (one round trip when nothing
    else changed; the cached-sessions set is rewritten only when it changed).

    Raises:
        redis.RedisError: Redis failed (the heartbeat loop logs and retries).
    """
    record = record_of(worker, worker.known_state)
    beat = membership.heartbeat(worker.worker_id, worker.instance, health=record.to_json())
    if beat.state is not None:
        writer.sync_cached(worker.worker_id, worker.cache.keys(), beat.cached_digest)
    return beat
