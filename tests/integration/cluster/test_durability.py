"""redis_durability replica: accept, grant, claim and commit count once a replica has them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster.connection import connect
from cluster.durability import Durability
from cluster.errors import NotReplicated
from cluster.jobs import TurnJob
from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.membership import RedisMembership
from cluster.session_store import RedisSessionStore
from cluster.transport import TurnQueue
from tests.conftest import RedisServer, start_redis_server
from tests.support.sentinel_topology import ReplicatedRedis, start_replicated_redis, wait_until

pytestmark = pytest.mark.integration


# A process learns how many replicas are attached (ROLE) and keeps it: one per test, as the
# tests add and remove replicas.
def _replica() -> Durability:
    return Durability("replica", 3000)  # generous: a loaded CI machine still confirms in time


def _unconfirmed() -> Durability:
    return Durability("replica", 200)  # nothing can confirm: keep the test short


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    started = start_replicated_redis(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def primary(pair: ReplicatedRedis) -> Iterator[redis.Redis]:
    client = connect(pair.url)
    yield client
    client.close()


def _second_replica(pair: ReplicatedRedis, primary: redis.Redis, tmp_path: Path) -> RedisServer:
    """Start another replica of ``pair``'s primary; return once both replicas have everything."""
    (tmp_path / "second").mkdir()
    second = start_redis_server(
        tmp_path / "second", "--replicaof", pair.primary.host, str(pair.primary.port),
        "--repl-diskless-sync-delay", "0",
    )  # fmt: skip
    wait_until(lambda: int(primary.execute_command("WAIT", 2, 100)) == 2, what="both replicas")
    return second


def _queue(client: redis.Redis, keyspace: Keyspace, durability: Durability) -> TurnQueue:
    return TurnQueue(client, keyspace, job_timeout=60, result_ttl=60, durability=durability)


def _register(client: redis.Redis, keyspace: Keyspace) -> None:
    membership = RedisMembership(client, keyspace, heartbeat_ttl=30)
    membership.register("w1", host="test", pid=1, queue=keyspace.worker_queue("w1"))


def _submit(queue: TurnQueue, message_id: str) -> str:
    job = TurnJob(message_id=message_id, session_key="s1", text="hi", submitted_at=0.0)
    return queue.submit(job, target="w1", proposal="w1", reply_ttl=60).status


def test_with_a_replica_following_every_write_is_acknowledged(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    _register(primary, keyspace)
    assert _submit(_queue(primary, keyspace, _replica()), "m1") == "queued"
    lease = RedisLeaseStore(primary, keyspace, durability=_replica()).acquire("s2", "w1", 30)
    assert lease is not None
    committed = RedisSessionStore(primary, keyspace, durability=_replica()).commit(
        lease, message_id="m1", new_messages=[{"role": "user", "content": "hi"}], reply={}
    )
    assert committed.turns == 1
    replica = pair.replica.client()
    try:  # acknowledged means the replica has it (WAIT came back 1)
        assert replica.exists(keyspace.session("s1").pending, keyspace.session("s2").history) == 2
    finally:
        replica.close()


def test_without_a_replica_nothing_is_acknowledged_and_the_retry_finds_the_message(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    _register(primary, keyspace)
    pair.cut_replication()  # the primary has no replica now
    queue = _queue(primary, keyspace, _unconfirmed())
    with pytest.raises(NotReplicated, match="same message id"):
        _submit(queue, "m1")
    with pytest.raises(NotReplicated):
        RedisLeaseStore(primary, keyspace, durability=_unconfirmed()).acquire("s2", "w1", 30)
    leases = RedisLeaseStore(primary, keyspace)
    lease = leases.acquire("s3", "w1", 30)
    assert lease is not None
    with pytest.raises(NotReplicated):
        RedisSessionStore(primary, keyspace, durability=_unconfirmed()).commit(
            lease, message_id="m3", new_messages=[{"role": "user", "content": "hi"}], reply={}
        )
    # The writes stayed on the primary: a resubmission is not queued twice.
    assert _submit(_queue(primary, keyspace, Durability()), "m1") == "pending"


def test_durability_none_acknowledges_what_the_primary_has(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    _register(primary, keyspace)
    pair.cut_replication()
    assert _submit(_queue(primary, keyspace, Durability()), "m1") == "queued"


def test_a_claim_waits_for_the_replica_only_when_it_claimed_something(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    _register(primary, keyspace)
    pair.cut_replication()
    queue = _queue(primary, keyspace, _unconfirmed())
    assert queue.claim_many("w1", 4, block=0) == []  # idle: nothing written, nothing to confirm
    assert _submit(_queue(primary, keyspace, Durability()), "m1") == "queued"
    with pytest.raises(NotReplicated, match="turn_claim"):
        queue.claim_many("w1", 4, block=0)


def test_a_commit_one_of_two_replicas_lacks_is_not_acknowledged(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Sentinel may promote either replica: with one paused (attached, but not
    confirming), the other's word alone must not make the commit count, or
    promoting the paused one loses a turn the caller was told about."""
    keyspace = Keyspace(namespace)
    second = _second_replica(pair, primary, tmp_path)
    try:
        leases = RedisLeaseStore(primary, keyspace, durability=_replica())
        sessions = RedisSessionStore(primary, keyspace, durability=_unconfirmed())
        lease = leases.acquire("s1", "w1", 30)  # both replicas confirm it
        assert lease is not None
        second.process.send_signal(signal.SIGSTOP)  # attached, but confirms nothing now
        try:
            with pytest.raises(NotReplicated, match="1 of 2 Redis replica"):
                sessions.commit(
                    lease, message_id="m1", new_messages=[{"role": "user", "content": "hi"}],
                    reply={},
                )  # fmt: skip
        finally:
            second.process.send_signal(signal.SIGCONT)
        # Once both have caught up, the next durable write is acknowledged again.
        assert leases.acquire("s2", "w1", 30) is not None
    finally:
        second.process.terminate()
        second.process.wait(timeout=10)


def test_a_primary_failed_over_while_it_serves_acknowledges_nothing_with_both_required(
    pair: ReplicatedRedis, primary: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    """Sentinel, wrongly deciding the primary is down, promotes one replica while the
    primary still serves and the other replica still follows it. With one replica
    required, that one confirms a grant the promoted replica never gets: acknowledged,
    then lost. With ``redis_durability_replicas`` 2, nothing is acknowledged."""
    keyspace = Keyspace(namespace)
    second = _second_replica(pair, primary, tmp_path)
    try:
        pair.cut_replication()  # the promotion: the first replica leaves the primary
        wait_until(lambda: len(primary.execute_command("ROLE")[2]) == 1, what="one replica left")
        both = Durability("replica", 3000, replicas=2)  # time for the attached one to confirm
        with pytest.raises(NotReplicated, match=r"1 of 2 .*\(1 attached"):
            RedisLeaseStore(primary, keyspace, durability=both).acquire("s1", "w1", 30)
        one = RedisLeaseStore(primary, keyspace, durability=_replica())
        assert one.acquire("s2", "w1", 30) is not None  # acknowledged: `second` has it ...
        promoted = pair.replica.client()
        try:  # ... and the replica Sentinel promoted does not
            assert not promoted.exists(keyspace.session("s2").lease)
        finally:
            promoted.close()
    finally:
        second.process.terminate()
        second.process.wait(timeout=10)
