"""The cluster event log (fakeredis): newest first, bounded, and never failing its writer."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.versions import RedisVersionStore
from coordinator.admin import drain_worker


def test_events_read_newest_first_with_redis_time_and_data() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    log = ClusterEventLog(client, Keyspace("t"))
    log.record("joined", "w1 joined", worker="w1")
    log.record("worker_dead", "w1 died", worker="w1", moved=3)
    newest, oldest = log.recent()
    assert (newest.kind, newest.worker, newest.data) == ("worker_dead", "w1", {"moved": 3})
    assert oldest.detail == "w1 joined" and oldest.at > 1e9 and newest.at >= oldest.at


def test_the_log_stays_bounded() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    log = ClusterEventLog(client, Keyspace("t"), max_events=10)
    for i in range(500):
        log.record("config", f"v{i}")
    assert client.xlen(Keyspace("t").event_log()) <= 200  # approximate trimming, bounded
    assert log.recent(1)[0].detail == "v499"


class _Unreachable(fakeredis.FakeRedis):
    def xadd(self, *args: object, **kwargs: object) -> bytes:
        raise redis.ConnectionError("Connection refused")


def test_a_redis_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    broken = _Unreachable(server=fakeredis.FakeServer())
    ClusterEventLog(broken, Keyspace("t")).record("config", "v1")  # no exception
    assert "could not log cluster event config (v1): Connection refused" in caplog.text


def test_pushes_bumps_and_drain_requests_are_logged_where_they_happen() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keyspace("t")
    store = RedisVersionStore(client, keys)
    store.publish_config({"model": {"default": "m"}}, author="ops@host", source="a.yaml")
    store.bump_registry_generation("mcp reload")
    RedisMembership(client, keys, heartbeat_ttl=5.0).register(
        "w1", host="h", pid=1, queue=keys.worker_queue("w1"), instance="i"
    )
    drain_worker(client, keys, "w1", timeout=30)
    details = [e.detail for e in ClusterEventLog(client, keys).recent()]
    assert details == [
        "drain of w1 requested (running turns get 30s)",
        "registry generation 1: mcp reload",
        "config v1 published by ops@host (a.yaml)",
    ]
