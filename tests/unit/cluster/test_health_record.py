"""The health record's JSON form: what the worker stores and status readers parse."""

from __future__ import annotations

import dataclasses

from cluster.health_record import HealthRecord
from tests.support.records import RECORD


def test_unreadable_records_parse_to_none() -> None:
    assert HealthRecord.from_json(b"{not json") is None
    assert HealthRecord.from_json(b"[1, 2]") is None
    assert HealthRecord.from_json(b'{"state": "active"}') is None
    assert dataclasses.replace(RECORD, cache_hits=0, cache_misses=0).cache_hit_rate is None
