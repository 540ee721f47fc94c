"""A worker's health record: what it writes at every heartbeat and status readers parse.

The worker builds one per beat (``worker/health.py``) and stores it as JSON
in its health hash (``Keyspace.worker_health``); ``agent-cluster status``,
``health`` and ``session`` (``coordinator/status.py``) read it back without
talking to the worker's process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = ["HealthRecord"]


@dataclass(frozen=True)
class HealthRecord:
    """What a worker reports about itself at each heartbeat.

    Attributes:
        worker_id: The worker.
        instance: Token of the process registered under that id.
        state: ``active``, ``draining`` or ``rejoining`` (declared dead, registering again).
        pid: Process id.
        host: Host name.
        started: When the process started, seconds since the epoch (its clock).
        written_at: When this record was written (the worker's clock).
        cache_size: Agents cached (pending builds included).
        cache_cap: The cache's cap.
        cache_hits: Checkouts that reused a cached agent since start.
        cache_misses: Checkouts that built an agent since start.
        cache_memory_bytes: Estimated bytes held by cached agents.
        turns_running: Turns whose handler runs now.
        turns_waiting: Turns claimed and waiting behind their session's or for a slot.
        concurrency: Most turns the worker runs at once.
        config_version: The cluster config version the worker has applied.
        config_version_lost: The highest version it applied before Redis
            reported a lower one (Redis lost its data); 0 when none.
        registry_generation: The tool registry generation it has applied.
        provider_tokens: Provider tokens its committed turns used since it
            started, by kind (``input``, ``cache_read``, ``cache_write``, ``output``).
        provider_cost_usd: Their estimated cost at list price, in dollars.
        memory_rss_bytes: The process' resident memory at its last memory
            check (0 without a memory budget: it is only read to enforce one).
        memory_budget_bytes: Its memory budget (``agent_cache_memory``), 0 when none.
        cache_memory_evictions: Agents soft-released for memory since start.
    """

    worker_id: str
    instance: str
    state: str
    pid: int
    host: str
    started: float
    written_at: float
    cache_size: int
    cache_cap: int
    cache_hits: int
    cache_misses: int
    cache_memory_bytes: int
    turns_running: int
    turns_waiting: int
    concurrency: int
    config_version: int
    registry_generation: int
    provider_tokens: dict[str, int] = field(default_factory=dict)
    provider_cost_usd: float = 0.0
    config_version_lost: int = 0
    memory_rss_bytes: int = 0
    memory_budget_bytes: int = 0
    cache_memory_evictions: int = 0

    @property
    def cache_hit_rate(self) -> float | None:
        """Hits over checkouts, ``None`` before the first checkout."""
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else None

    def to_json(self) -> str:
        """The record as compact JSON (what is stored)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> HealthRecord | None:
        """Parse a stored record; ``None`` when it is unreadable (never raises)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                return None
            return cls(
                worker_id=str(data["worker_id"]),
                instance=str(data.get("instance", "")),
                state=str(data["state"]),
                pid=int(data.get("pid", 0)),
                host=str(data.get("host", "")),
                started=float(data.get("started", 0.0)),
                written_at=float(data.get("written_at", 0.0)),
                cache_size=int(data.get("cache_size", 0)),
                cache_cap=int(data.get("cache_cap", 0)),
                cache_hits=int(data.get("cache_hits", 0)),
                cache_misses=int(data.get("cache_misses", 0)),
                cache_memory_bytes=int(data.get("cache_memory_bytes", 0)),
                turns_running=int(data.get("turns_running", 0)),
                turns_waiting=int(data.get("turns_waiting", 0)),
                concurrency=int(data.get("concurrency", 0)),
                config_version=int(data.get("config_version", -1)),
                registry_generation=int(data.get("registry_generation", -1)),
                provider_tokens={
                    str(k): int(v) for k, v in dict(data.get("provider_tokens") or {}).items()
                },
                provider_cost_usd=float(data.get("provider_cost_usd", 0.0)),
                config_version_lost=int(data.get("config_version_lost", 0)),
                memory_rss_bytes=int(data.get("memory_rss_bytes", 0)),
                memory_budget_bytes=int(data.get("memory_budget_bytes", 0)),
                cache_memory_evictions=int(data.get("cache_memory_evictions", 0)),
            )
        except (ValueError, TypeError, KeyError):
            return None
