"""Fencing survives a failover: no lease granted before it can write afterwards.

A real primary and replica; the "failover" is done by hand the way it goes
wrong in production: the replica stops following (so it misses the newest
writes) and is promoted (``REPLICAOF NO ONE``), then the old primary follows
it and loses what the replica never got.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster.connection import connect
from cluster.errors import LeaseLost, LeaseVoided
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore
from cluster.session_store import RedisSessionStore
from cluster.tool_state import RedisToolStateStore
from tests.support.sentinel_topology import ReplicatedRedis, start_replicated_redis, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    started = start_replicated_redis(tmp_path)
    yield started
    started.stop()


def _fail_over(pair: ReplicatedRedis) -> None:
    pair.demote_primary()
    old = pair.primary.client()
    try:
        wait_until(
            lambda: old.info("replication").get("master_link_status") == "up",
            what="the old primary to follow the promoted replica",
        )
    finally:
        old.close()


def _writes_refused(client: redis.Redis, keyspace: Keyspace, lease: Lease) -> None:
    sessions = RedisSessionStore(client, keyspace)
    with pytest.raises(LeaseLost):
        sessions.commit(
            lease, message_id="late", new_messages=[{"role": "user", "content": "x"}], reply={}
        )
    with pytest.raises(LeaseLost):
        RedisToolStateStore(client, keyspace, lease=lease).save(lease.session_key, "k", 1)
    leases = RedisLeaseStore(client, keyspace)
    assert not leases.extend(lease, 10)
    assert not leases.release(lease)
    assert sessions.load(lease.session_key).history == []


def test_a_grant_the_promoted_replica_never_got_cannot_write_after_the_failover(
    pair: ReplicatedRedis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    old_primary, new_primary = connect(pair.url), connect(pair.replica.url)
    try:
        before = RedisLeaseStore(old_primary, keyspace)
        earlier = before.acquire("s1", "w1", 30)
        assert earlier is not None and before.release(earlier)
        pair.wait_synced()
        pair.cut_replication()  # the replica is promoted and misses what follows
        granted = before.acquire("s1", "w1", 30)  # acknowledged by the old primary only
        assert granted is not None and granted.token == earlier.token + 1
        _fail_over(pair)

        after = RedisLeaseStore(new_primary, keyspace)
        assert after.holder("s1") is None  # the grant was lost with the old primary
        fresh = after.acquire("s1", "w2", 30)
        assert fresh is not None
        # The promoted replica hands the lost grant's token out again ...
        assert fresh.token == granted.token
        # ... under a higher epoch, so the fences differ and the old one is refused.
        assert fresh.epoch == granted.epoch + 1 and fresh.fence != granted.fence
        _writes_refused(new_primary, keyspace, granted)
        committed = RedisSessionStore(new_primary, keyspace).commit(
            fresh, message_id="m1", new_messages=[{"role": "user", "content": "hi"}], reply={}
        )
        assert committed.turns == 1
    finally:
        old_primary.close()
        new_primary.close()


def test_a_lease_the_replica_did_get_is_void_after_the_failover(
    pair: ReplicatedRedis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    old_primary, new_primary = connect(pair.url), connect(pair.replica.url)
    try:
        held = RedisLeaseStore(old_primary, keyspace).acquire("s2", "w1", 30)
        assert held is not None
        pair.wait_synced()
        pair.cut_replication()
        _fail_over(pair)

        after = RedisLeaseStore(new_primary, keyspace)
        still_there = after.holder("s2")
        assert still_there is not None and still_there.token == held.token
        with pytest.raises(LeaseVoided, match="earlier Redis primary"):
            RedisSessionStore(new_primary, keyspace).commit(
                held, message_id="m1", new_messages=[], reply={}
            )
        _writes_refused(new_primary, keyspace, held)
        # The void lease does not make the next turn wait out its 30 s.
        taken = after.acquire("s2", "w2", 30)
        assert taken is not None and taken.epoch == held.epoch + 1
        assert taken.token == held.token + 1
    finally:
        old_primary.close()
        new_primary.close()
