"""Folding contract (steer, collect) on fakeredis and real Redis.

A message queued with ``steer`` or ``collect`` is either answered by the turn
that took it in (in that turn's commit) or stays queued to run as its own
turn, in order: never both, never lost.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cluster.errors import LeaseLost
from cluster.folds import COLLECT_MARK, STEER_MARK, FoldStore
from cluster.keys import Keyspace
from cluster.leases import Lease, RedisLeaseStore, TurnStartStatus
from cluster.membership import RedisMembership
from cluster.replies import ReplyChannel
from cluster.session_store import RedisSessionStore
from cluster.transport import TurnJob, TurnQueue
from tests.support.turn_queue import REPLY_TTL

SESSION = "fold-chat"
USER_A = {"role": "user", "content": "a"}


@pytest.fixture(autouse=True)
def _forget_rq_keys(client: redis.Redis, namespace: str) -> Iterator[None]:
    yield
    ours = namespace.encode()
    for key in client.scan_iter(match="rq:*", count=1000):
        if ours in key:
            client.delete(key)
    members = [m for m in client.smembers("rq:queues") if ours in m]
    if members:
        client.srem("rq:queues", *members)


@pytest.fixture
def queue(client: redis.Redis, keyspace: Keyspace) -> TurnQueue:
    RedisMembership(client, keyspace, heartbeat_ttl=3600).register(
        "w1", host="test", pid=1, queue=keyspace.worker_queue("w1")
    )
    return TurnQueue(client, keyspace, job_timeout=60, result_ttl=120)


def _send(queue: TurnQueue, message_id: str, strategy: str = "enqueue") -> TurnJob:
    job = TurnJob(
        message_id=message_id, session_key=SESSION, text=f"text {message_id}", submitted_at=1.0
    )
    placed = queue.submit(job, target="w1", proposal="w1", reply_ttl=REPLY_TTL, strategy=strategy)
    assert placed.status == "queued"
    return job


def _begin(client: redis.Redis, keyspace: Keyspace, queue: TurnQueue, job: TurnJob) -> Lease:
    start = RedisLeaseStore(client, keyspace).begin_turn(
        SESSION, "w1", 30, job_id=queue.job_id(job), message_id=job.message_id
    )
    assert start.status is TurnStartStatus.ACQUIRED and start.lease is not None
    return start.lease


def _commit(
    client: redis.Redis,
    keyspace: Keyspace,
    lease: Lease,
    job_id: str,
    message_id: str,
    folded: list[tuple[str, str, dict[str, object]]],
) -> None:
    RedisSessionStore(client, keyspace).commit(
        lease,
        message_id=message_id,
        new_messages=[USER_A],
        reply={"text": "done", "message_id": message_id},
        job_id=job_id,
        reply_ttl=60,
        folded=folded,
    )


def test_a_taken_steer_message_is_answered_by_the_turns_commit_and_never_runs(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    a = _send(queue, "a")
    lease = _begin(client, keyspace, queue, a)
    s = _send(queue, "s", "steer")
    folds = FoldStore(client, keyspace)
    run = folds.take(lease, queue.job_id(a), STEER_MARK)
    assert [c.job_id for c in run.candidates] == [queue.job_id(s)]
    assert [j.text for j in folds.jobs([queue.job_id(s)])] == ["text s"]
    assert folds.take(lease, queue.job_id(a), STEER_MARK).candidates == (), "taken once"
    _commit(
        client, keyspace, lease, queue.job_id(a), "a", [("s", queue.job_id(s), {"text": "done"})]
    )
    assert ReplyChannel(client, keyspace, reply_ttl=30).wait(SESSION, "s", 1) == {"text": "done"}
    again = RedisLeaseStore(client, keyspace).begin_turn(
        SESSION, "w1", 30, job_id=queue.job_id(s), message_id="s"
    )
    assert again.status is TurnStartStatus.ANSWERED, "the folded message runs no turn"


def test_a_steer_message_not_taken_before_the_commit_runs_as_the_next_turn(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    a = _send(queue, "a")
    lease = _begin(client, keyspace, queue, a)
    s = _send(queue, "s", "steer")
    _commit(client, keyspace, lease, queue.job_id(a), "a", [])
    RedisLeaseStore(client, keyspace).release(lease)
    nxt = _begin(client, keyspace, queue, s)
    assert FoldStore(client, keyspace).take(nxt, queue.job_id(s), STEER_MARK).candidates == ()


def test_a_turn_that_never_commits_leaves_its_taken_messages_queued_in_order(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    a = _send(queue, "a")
    lease = _begin(client, keyspace, queue, a)
    s = _send(queue, "s", "steer")
    assert FoldStore(client, keyspace).take(lease, queue.job_id(a), STEER_MARK).candidates
    RedisLeaseStore(client, keyspace).release(lease)  # the turn died before its commit
    rerun = _begin(client, keyspace, queue, a)
    again = FoldStore(client, keyspace).take(rerun, queue.job_id(a), STEER_MARK)
    assert [c.job_id for c in again.candidates] == [queue.job_id(s)], "the re-run may take it in"


def test_a_plain_message_in_between_keeps_later_steer_messages_out(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    a = _send(queue, "a")
    lease = _begin(client, keyspace, queue, a)
    _send(queue, "b")
    _send(queue, "s", "steer")
    assert FoldStore(client, keyspace).take(lease, queue.job_id(a), STEER_MARK).candidates == ()


def test_collect_marks_only_messages_sent_while_a_turn_runs_and_takes_up_to_a_sequence(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    first = _send(queue, "c0", "collect")  # nothing ran: a plain turn
    lease = _begin(client, keyspace, queue, first)
    folds = FoldStore(client, keyspace)
    assert folds.look(lease, queue.job_id(first), COLLECT_MARK).own_arrived_ms is None
    jobs = [_send(queue, f"c{i}", "collect") for i in (1, 2, 3)]
    seen = folds.look(lease, queue.job_id(first), COLLECT_MARK)
    assert seen is not None and [c.job_id for c in seen.candidates] == [
        queue.job_id(j) for j in jobs
    ]
    assert all(c.arrived_ms is not None and c.arrived_ms <= seen.now_ms for c in seen.candidates)
    taken = folds.take(lease, queue.job_id(first), COLLECT_MARK, seen.candidates[1].seq)
    assert [c.job_id for c in taken.candidates] == [queue.job_id(j) for j in jobs[:2]]
    assert folds.look(lease, queue.job_id(first), STEER_MARK).candidates == (), "marks differ"


def test_a_stale_lease_takes_nothing(
    client: redis.Redis, keyspace: Keyspace, queue: TurnQueue
) -> None:
    a = _send(queue, "a")
    lease = _begin(client, keyspace, queue, a)
    _send(queue, "s", "steer")
    RedisLeaseStore(client, keyspace).release(lease)
    with pytest.raises(LeaseLost):
        FoldStore(client, keyspace).take(lease, queue.job_id(a), STEER_MARK)
