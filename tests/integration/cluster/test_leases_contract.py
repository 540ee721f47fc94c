"""Lease contract: exclusive, monotonic fencing tokens, extend, compare-and-delete."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.versions import RedisVersionStore


def test_lease_is_exclusive(client: redis.Redis, keyspace: Keyspace) -> None:
    leases = RedisLeaseStore(client, keyspace)
    first = leases.acquire("s1", "w1", 10)
    assert first is not None and first.worker_id == "w1" and first.session_key == "s1"
    assert leases.acquire("s1", "w2", 10) is None
    assert leases.acquire("s1", "w1", 10) is None  # one turn at a time, same worker too
    assert leases.acquire("s2", "w2", 10) is not None  # other sessions are independent
    holder = leases.holder("s1")
    assert holder is not None and (holder.token, holder.worker_id) == (first.token, "w1")
    assert 9 < holder.ttl <= 10


def test_tokens_only_grow(client: redis.Redis, keyspace: Keyspace) -> None:
    leases = RedisLeaseStore(client, keyspace)
    tokens = []
    for worker in ("w1", "w2", "w1"):
        lease = leases.acquire("s1", worker, 10)
        assert lease is not None
        tokens.append(lease.token)
        assert leases.release(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    assert leases.holder("s1") is None


def test_acquire_returns_versions_in_one_round_trip(
    client: redis.Redis, keyspace: Keyspace, round_trips: Callable[[], int]
) -> None:
    versions = RedisVersionStore(client, keyspace)
    versions.publish_config({"model": {"name": "m"}})
    versions.publish_config({"model": {"name": "n"}})
    versions.bump_registry_generation("test")
    leases = RedisLeaseStore(client, keyspace)
    warm = leases.acquire("warm", "w1", 10)
    assert warm is not None and (warm.config_version, warm.registry_generation) == (2, 1)
    before = round_trips()
    lease = leases.acquire("s1", "w1", 10)
    assert round_trips() - before == 1
    assert lease is not None and (lease.config_version, lease.registry_generation) == (2, 1)


def test_versions_are_zero_before_anything_is_published(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    lease = RedisLeaseStore(client, keyspace).acquire("s1", "w1", 10)
    assert lease is not None and (lease.config_version, lease.registry_generation) == (0, 0)


def test_extend_and_release_only_work_for_the_holder(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    leases = RedisLeaseStore(client, keyspace)
    lease = leases.acquire("s1", "w1", 0.2)
    assert lease is not None
    assert leases.extend(lease, 10)
    holder = leases.holder("s1")
    assert holder is not None and holder.ttl > 5
    assert leases.release(lease)
    assert not leases.release(lease)
    assert not leases.extend(lease, 10)


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    leases = RedisLeaseStore(client, keyspace)
    old = leases.acquire("s1", "w1", 0.1)
    assert old is not None
    time.sleep(0.15)
    new = leases.acquire("s1", "w2", 10)
    assert new is not None and new.token > old.token
    assert not leases.extend(old, 10)
    assert not leases.release(old)  # must not delete the new holder's lease
    assert leases.holder("s1") is not None
