"""Sample records shared by tests of their writers and readers."""

from __future__ import annotations

from cluster.health_record import HealthRecord

RECORD = HealthRecord(
    worker_id="w1",
    instance="i1",
    state="active",
    pid=42,
    host="h",
    started=1.0,
    written_at=2.0,
    cache_size=2,
    cache_cap=128,
    cache_hits=3,
    cache_misses=1,
    cache_memory_bytes=100,
    turns_running=1,
    turns_waiting=0,
    concurrency=8,
    config_version=4,
    registry_generation=1,
)
"""A worker's health record: 3 cache hits and 1 miss (hit rate 0.75)."""
