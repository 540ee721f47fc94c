"""Ownership contract: sticky owners, moves with epoch bumps, one round trip."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from cluster.errors import InvalidMessage, NoLiveWorkers
from cluster.keys import Keyspace
from cluster.ownership import Ownership, RedisOwnershipStore


def test_new_session_takes_the_proposed_owner(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisOwnershipStore(client, keyspace)
    got = store.lookup_or_assign("s1", eligible=["w1", "w2"], proposed="w2")
    assert got == Ownership("w2", 1, moved=True)
    assert store.owner_of("s1") == Ownership("w2", 1, moved=False)
    assert store.owner_of("unknown") is None


def test_owner_is_sticky_while_eligible(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisOwnershipStore(client, keyspace)
    store.lookup_or_assign("s1", eligible=["w1"], proposed="w1")
    # a new worker joined and the ring now proposes it: the session stays
    got = store.lookup_or_assign("s1", eligible=["w1", "w2"], proposed="w2")
    assert got == Ownership("w1", 1, moved=False)


def test_session_moves_when_owner_is_not_eligible_and_epoch_grows(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisOwnershipStore(client, keyspace)
    store.lookup_or_assign("s1", eligible=["w1", "w2"], proposed="w1")
    moved = store.lookup_or_assign("s1", eligible=["w2", "w3"], proposed="w2")  # w1 died/draining
    assert moved == Ownership("w2", 2, moved=True)
    back = store.lookup_or_assign("s1", eligible=["w1"], proposed="w1")
    assert back == Ownership("w1", 3, moved=True)


def test_sessions_owned_by_lists_current_sessions_only(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisOwnershipStore(client, keyspace)
    for s in ("a", "b", "c{weird}"):
        store.lookup_or_assign(s, eligible=["w1"], proposed="w1")
    store.lookup_or_assign("b", eligible=["w2"], proposed="w2")
    assert store.sessions_owned_by("w1") == ["a", "c{weird}"]
    assert store.sessions_owned_by("w2") == ["b"]
    assert client.smembers(keyspace.owned_sessions("w1")) == {
        b"a",
        b"c{weird}",
    }  # stale entry dropped
    assert store.sessions_owned_by("nobody") == []


def test_lookup_or_assign_is_one_round_trip(
    client: redis.Redis, keyspace: Keyspace, round_trips: Callable[[], int]
) -> None:
    store = RedisOwnershipStore(client, keyspace)
    store.lookup_or_assign("warm", eligible=["w1"], proposed="w1")  # loads the script once
    before = round_trips()
    store.lookup_or_assign("s1", eligible=["w1", "w2"], proposed="w2")
    store.lookup_or_assign("s1", eligible=["w1"], proposed="w1")
    assert round_trips() - before == 2


def test_arguments_are_checked(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisOwnershipStore(client, keyspace)
    with pytest.raises(NoLiveWorkers):
        store.lookup_or_assign("s1", eligible=[], proposed="w1")
    with pytest.raises(InvalidMessage, match="proposed"):
        store.lookup_or_assign("s1", eligible=["w1"], proposed="w9")
