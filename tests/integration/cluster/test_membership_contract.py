"""Membership contract: fakeredis and real Redis behave the same."""

from __future__ import annotations

import time

import pytest
import redis

from cluster.errors import UnknownWorker
from cluster.keys import Keyspace
from cluster.membership import RedisMembership, WorkerState


def _membership(client: redis.Redis, keyspace: Keyspace, ttl: float = 5.0) -> RedisMembership:
    return RedisMembership(client, keyspace, heartbeat_ttl=ttl)


def _register(m: RedisMembership, worker_id: str) -> None:
    m.register(worker_id, host="host-a", pid=1234, queue=f"q.{worker_id}")


def test_registered_workers_are_live_with_their_facts(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    m = _membership(client, keyspace)
    _register(m, "w2")
    _register(m, "w1")
    live = m.live_workers()
    assert [w.worker_id for w in live] == ["w1", "w2"]
    w1 = live[0]
    assert (w1.state, w1.host, w1.pid, w1.queue) == (WorkerState.ACTIVE, "host-a", 1234, "q.w1")
    assert w1.started > 0 and w1.last_heartbeat >= w1.started - 0.01
    assert w1.expires_at == pytest.approx(w1.last_heartbeat + 5.0, abs=0.01)
    assert m.is_alive("w1") and not m.is_alive("nobody")


def test_draining_workers_are_live_but_not_active(client: redis.Redis, keyspace: Keyspace) -> None:
    m = _membership(client, keyspace)
    _register(m, "w1")
    _register(m, "w2")
    m.set_state("w1", WorkerState.DRAINING)
    assert [w.worker_id for w in m.live_workers()] == ["w1", "w2"]
    assert [w.worker_id for w in m.active_workers()] == ["w2"]
    assert m.heartbeat("w1").state is WorkerState.DRAINING
    m.set_state("w1", WorkerState.ACTIVE)
    assert [w.worker_id for w in m.active_workers()] == ["w1", "w2"]


def test_set_state_of_an_unknown_worker(client: redis.Redis, keyspace: Keyspace) -> None:
    with pytest.raises(UnknownWorker, match="ghost"):
        _membership(client, keyspace).set_state("ghost", WorkerState.DRAINING)


def test_deregister_removes_the_worker(client: redis.Redis, keyspace: Keyspace) -> None:
    m = _membership(client, keyspace)
    _register(m, "w1")
    assert m.deregister("w1")
    assert not m.deregister("w1")
    assert m.live_workers() == [] and not m.is_alive("w1")
    assert m.heartbeat("w1").state is None


def test_missed_heartbeats_mean_death_and_prune_reports_the_dead(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    m = _membership(client, keyspace, ttl=1.0)  # long enough that a loaded machine keeps "lives"
    _register(m, "dies")
    _register(m, "lives")
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and m.is_alive("dies"):
        time.sleep(0.05)
        assert m.heartbeat("lives").state is WorkerState.ACTIVE
    assert not m.is_alive("dies")
    assert [w.worker_id for w in m.live_workers()] == ["lives"]
    assert m.prune_dead() == ["dies"]
    assert m.prune_dead() == []
    # a pruned worker's heartbeat tells it to register again
    assert m.heartbeat("dies").state is None
    _register(m, "dies")
    assert m.is_alive("dies")


def test_a_heartbeat_says_when_the_next_other_worker_may_be_dead(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    m = _membership(client, keyspace, ttl=5.0)
    _register(m, "w1")
    assert m.heartbeat("w1").next_expiry is None  # alone: nobody to look after
    _register(m, "w2")
    beat = m.heartbeat("w1")
    assert beat.next_expiry is not None and 4.0 < beat.next_expiry <= 5.0
    m.deregister("w2")
    assert m.heartbeat("w1").next_expiry is None


def test_heartbeat_extends_life(client: redis.Redis, keyspace: Keyspace) -> None:
    m = _membership(client, keyspace, ttl=5.0)
    _register(m, "w1")
    before = m.live_workers()[0].expires_at
    time.sleep(0.05)
    m.heartbeat("w1")
    after = m.live_workers()[0]
    assert after.expires_at > before and after.last_heartbeat > after.started


def test_membership_reads_never_scan(
    client: redis.Redis, keyspace: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = _membership(client, keyspace)
    _register(m, "w1")

    def no_scan(*_a: object, **_k: object) -> object:
        raise AssertionError("membership must not scan the keyspace")

    monkeypatch.setattr(client, "scan", no_scan)
    monkeypatch.setattr(client, "keys", no_scan)
    assert [w.worker_id for w in m.live_workers()] == ["w1"]
