"""Tool state contract: the agent's ToolStateStore protocol, fenced by the lease."""

from __future__ import annotations

import time

import pytest
import redis

from cluster.errors import InvalidMessage, LeaseLost
from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.tool_state import RedisToolStateStore


def test_unfenced_save_load_delete(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisToolStateStore(client, keyspace)
    assert store.load("s1", "todo") is None
    store.save("s1", "todo", {"items": [{"text": "a", "done": False}], "n": 1})
    store.save("s1", "memory", ["note"])
    store.save("s2", "todo", [])
    assert store.load("s1", "todo") == {"items": [{"text": "a", "done": False}], "n": 1}
    assert store.load("s1", "memory") == ["note"]
    store.delete_task("s1")
    assert store.load("s1", "todo") is None and store.load("s1", "memory") is None
    assert store.load("s2", "todo") == []


def test_a_new_store_for_the_same_task_finds_the_state(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    RedisToolStateStore(client, keyspace).save("s1", "process", {"pids": [1, 2]})
    assert RedisToolStateStore(client, keyspace).load("s1", "process") == {"pids": [1, 2]}


def test_fenced_store_writes_while_it_holds_the_lease(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    lease = RedisLeaseStore(client, keyspace).acquire("s1", "w1", 10)
    assert lease is not None
    store = RedisToolStateStore(client, keyspace).fenced(lease)
    assert store.lease == lease
    store.save("s1", "todo", [1])
    assert store.load("s1", "todo") == [1]
    with pytest.raises(InvalidMessage, match="task 's2'"):
        store.save("s2", "todo", [1])
    store.delete_task("s1")
    assert store.load("s1", "todo") is None


def test_fenced_store_after_takeover_raises_and_writes_nothing(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    leases = RedisLeaseStore(client, keyspace)
    old = leases.acquire("s1", "w1", 0.1)
    assert old is not None
    stale = RedisToolStateStore(client, keyspace, lease=old)
    stale.save("s1", "todo", ["before"])
    time.sleep(0.15)
    new = leases.acquire("s1", "w2", 10)
    assert new is not None
    with pytest.raises(LeaseLost, match="another worker"):
        stale.save("s1", "todo", ["after"])
    with pytest.raises(LeaseLost):
        stale.delete_task("s1")
    assert stale.load("s1", "todo") == ["before"]
    RedisToolStateStore(client, keyspace, lease=new).save("s1", "todo", ["new"])
    assert stale.load("s1", "todo") == ["new"]


def test_values_must_be_msgpack_safe(client: redis.Redis, keyspace: Keyspace) -> None:
    with pytest.raises(TypeError):
        RedisToolStateStore(client, keyspace).save("s1", "k", object())
