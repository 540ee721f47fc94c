"""The worker writes its health record at each heartbeat (fakeredis)."""

from __future__ import annotations

import dataclasses

import fakeredis

from cluster.health_record import HealthRecord
from cluster.keys import Keyspace
from tests.support.records import RECORD
from worker.health import HealthWriter


def test_record_round_trips_and_expires_with_the_heartbeat_ttl() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keyspace("t")
    HealthWriter(client, keys, ttl=5.0).write(RECORD, ["a", "b"])
    raw = client.hget(keys.worker_health("w1"), "record")
    assert raw is not None and HealthRecord.from_json(raw) == RECORD
    assert RECORD.cache_hit_rate == 0.75
    assert client.smembers(keys.worker_cached("w1")) == {b"a", b"b"}
    for key in (keys.worker_health("w1"), keys.worker_cached("w1")):
        assert 0 < client.pttl(key) <= 5000


def test_cached_set_is_rewritten_only_when_the_cache_changed() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keyspace("t")
    writer = HealthWriter(client, keys, ttl=5.0)
    assert writer.write(RECORD, ["a", "b"])
    assert not writer.write(dataclasses.replace(RECORD, written_at=3.0), ["b", "a"])
    assert HealthRecord.from_json(client.hget(keys.worker_health("w1"), "record") or b"") == (
        dataclasses.replace(RECORD, written_at=3.0)
    ), "the record itself is written every time"
    assert writer.write(RECORD, ["c"])
    assert client.smembers(keys.worker_cached("w1")) == {b"c"}
    assert writer.write(RECORD, [])
    assert not client.exists(keys.worker_cached("w1"))
