"""The health record's JSON form: what the worker stores and status readers parse."""

from __future__ import annotations

import dataclasses

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



def test_unreadable_records_parse_to_none() -> None:
    assert HealthRecord.from_json(b"{not json") is None
    assert HealthRecord.from_json(b"[1, 2]") is None
    assert HealthRecord.from_json(b'{"state": "active"}') is None
    assert dataclasses.replace(RECORD, cache_hits=0, cache_misses=0).cache_hit_rate is None
