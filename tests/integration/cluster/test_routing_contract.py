"""The atomic route+enqueue script and the turn-start gate, on fakeredis and real Redis.

These decide that nothing accepted is lost (a turn never lands on a queue
nobody drains), that a session's turns run in order wherever they are, and
that a resubmitted message id always leads to its one answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore, TurnStartStatus
from cluster.membership import RedisMembership, WorkerState
from cluster.session_store import RedisSessionStore
from cluster.transport import Enqueued, ReplyChannel, TurnJob, TurnQueue


@pytest.fixture(autouse=True)
def _forget_rq_keys(client: redis.Redis, namespace: str) -> Iterator[None]:
    yield
    for key in client.scan_iter(match=f"rq:*{namespace}*", count=1000):
        client.delete(key)


@pytest.fixture
def members(client: redis.Redis, keyspace: Keyspace) -> RedisMembership:
    membership = RedisMembership(client, keyspace, heartbeat_ttl=3600)
    for worker in ("w1", "w2"):
        membership.register(worker, host="h", pid=1, queue=keyspace.worker_queue(worker))
    return membership


@pytest.fixture
def queue(client: redis.Redis, keyspace: Keyspace, members: RedisMembership) -> TurnQueue:
    return TurnQueue(client, keyspace, job_timeout=60, result_ttl=60)


def job(session: str, n: int) -> TurnJob:
    return TurnJob(message_id=f"m{n}", session_key=session, text=f"t{n}", submitted_at=0.0)


def submit(
    queue: TurnQueue, j: TurnJob, target: str, proposal: str | None = None, idle: float = 0.0
) -> Enqueued:
    return queue.submit(
        j, target=target, proposal=proposal or target, reply_ttl=30, rebalance_idle=idle
    )


def test_a_new_session_goes_to_the_proposal_and_stays_there(queue: TurnQueue) -> None:
    first = submit(queue, job("s", 1), "w1")
    assert (first.status, first.worker_id, first.epoch, first.seq) == ("queued", "w1", 1, 1)
    # The ring now prefers w2, but the session is sticky while w1 is eligible.
    rerouted = submit(queue, job("s", 2), "w2")
    assert (rerouted.status, rerouted.worker_id) == ("reroute", "w1")
    second = submit(queue, job("s", 2), "w1", proposal="w2")
    assert (second.status, second.seq) == ("queued", 2)
    assert queue.pending("w1") == 2 and queue.pending("w2") == 0


def test_nothing_is_queued_on_a_draining_or_dead_worker(
    queue: TurnQueue, members: RedisMembership, client: redis.Redis, keyspace: Keyspace
) -> None:
    assert submit(queue, job("s", 1), "w1").status == "queued"
    members.set_state("w1", WorkerState.DRAINING)
    blocked = submit(queue, job("s", 2), "w1")
    assert (blocked.status, blocked.worker_id) == ("reroute", ""), "w1 drains: not eligible"
    moved = submit(queue, job("s", 2), "w2")
    assert (moved.status, moved.worker_id, moved.epoch) == ("queued", "w2", 2)
    client.zadd(keyspace.members_live(), {"w2": 1})  # w2's heartbeat expired long ago
    assert submit(queue, job("s", 3), "w2").status == "reroute"
    assert queue.pending("w1") == 1 and queue.pending("w2") == 1


def test_a_resubmitted_id_keeps_its_place_or_is_reported_stranded(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    assert submit(queue, job("s", 1), "w1").status == "queued"
    again = submit(queue, job("s", 1), "w1")
    assert (again.status, again.worker_id) == ("pending", "w1")
    assert queue.pending("w1") == 1, "not queued twice"
    client.zadd(keyspace.members_live(), {"w1": 1})  # w1 died with the job on its queue
    stranded = submit(queue, job("s", 1), "w2")
    assert (stranded.status, stranded.worker_id) == ("stranded", "w1")


def test_an_answered_id_is_answered_again_from_the_stored_reply(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    j = job("s", 1)
    submit(queue, j, "w1")
    leases, store = RedisLeaseStore(client, keyspace), RedisSessionStore(client, keyspace)
    start = leases.begin_turn("s", "w1", 30, job_id=queue.job_id(j), message_id="m1")
    assert start.status is TurnStartStatus.ACQUIRED and start.lease is not None
    store.commit(
        start.lease,
        message_id="m1",
        new_messages=[{"role": "user", "content": "t1"}],
        reply={"text": "r1"},
        job_id=queue.job_id(j),
        reply_ttl=30,
    )
    replies = ReplyChannel(client, keyspace, reply_ttl=30)
    assert replies.wait("s", "m1", 0) == {"text": "r1"}, "the commit delivered the reply"
    assert submit(queue, j, "w1").status == "answered"
    assert replies.wait("s", "m1", 0) == {"text": "r1"}, "delivered again, nothing queued"
    assert queue.pending("w1") == 1  # only the original job id (claimed by nobody here)


def test_turns_start_only_on_the_owner_in_session_order(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    leases = RedisLeaseStore(client, keyspace)
    j1, j2 = job("s", 1), job("s", 2)
    submit(queue, j1, "w1")
    submit(queue, j2, "w1")
    later = leases.begin_turn("s", "w1", 30, job_id=queue.job_id(j2), message_id="m2")
    assert later.status is TurnStartStatus.NOT_HEAD and later.other == queue.job_id(j1)
    elsewhere = leases.begin_turn("s", "w2", 30, job_id=queue.job_id(j1), message_id="m1")
    assert (elsewhere.status, elsewhere.other) == (TurnStartStatus.NOT_OWNER, "w1")
    first = leases.begin_turn("s", "w1", 30, job_id=queue.job_id(j1), message_id="m1")
    assert first.status is TurnStartStatus.ACQUIRED and first.lease is not None
    # The same worker's leftover lease (a cut-off attempt) is taken over with a new token.
    retry = leases.begin_turn("s", "w1", 30, job_id=queue.job_id(j1), message_id="m1")
    assert retry.status is TurnStartStatus.ACQUIRED and retry.lease is not None
    assert retry.lease.token > first.lease.token


def test_a_lease_of_a_dead_worker_is_broken_and_its_token_stays_stale(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    leases = RedisLeaseStore(client, keyspace)
    j1 = job("s", 1)
    submit(queue, j1, "w1")
    held = leases.begin_turn("s", "w1", 30, job_id=queue.job_id(j1), message_id="m1").lease
    assert held is not None
    assert not leases.break_held_by("s", "w2"), "only the named worker's lease"
    assert leases.break_held_by("s", "w1")
    assert leases.holder("s") is None
    assert not leases.extend(held, 30), "the old holder cannot extend or write"


def test_an_idle_session_moves_to_the_ring_owner_a_busy_one_does_not(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    submit(queue, job("s", 1), "w1")
    # Pending work: the session stays on w1 even though the ring now says w2.
    assert submit(queue, job("s", 2), "w2", idle=0.001).worker_id == "w1"
    client.delete(keyspace.session("s").pending)
    client.hset(keyspace.session("s").meta, "last_active", 0)
    moved = submit(queue, job("s", 3), "w2", idle=0.001)
    assert (moved.status, moved.worker_id, moved.epoch) == ("queued", "w2", 2)


def test_the_enqueue_names_the_primary_that_accepted_the_message(
    queue: TurnQueue, client: redis.Redis
) -> None:
    # A caller notices a failover that lost its message by this id changing, so it must be
    # the id of the server that has the message, read in the same atomic step.
    try:
        replid = str(client.info("replication")["master_replid"])
    except redis.ResponseError:  # fakeredis has no INFO: it never fails over either
        replid = ""
    accepted = submit(queue, job("s", 1), "w1")
    assert (accepted.status, accepted.primary) == ("queued", replid)
    again = submit(queue, job("s", 1), "w1")  # resubmitted: still pending, on the same server
    assert (again.status, again.primary) == ("pending", replid)
