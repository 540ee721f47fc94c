"""TurnQueue and ReplyChannel contract on fakeredis and real Redis; the claim loop end to end."""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import fakeredis
import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.utils import now, utcformat

from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.serialization import MsgpackSerializer
from cluster.transport import ReplyChannel, TurnJob, TurnQueue
from tests.support.turn_queue import claim, enqueue
from worker.executor import ClaimLoop, TurnExecutor


@pytest.fixture(autouse=True)
def _forget_rq_keys(client: redis.Redis, namespace: str) -> Iterator[None]:
    """rq's keys are not under our namespace; remove the ones this test made."""
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
    # Turns are queued only on live, active workers: register the ones the tests use.
    membership = RedisMembership(client, keyspace, heartbeat_ttl=3600)
    for worker in ("w1", "w2", "w3", "dead"):
        membership.register(worker, host="test", pid=1, queue=keyspace.worker_queue(worker))
    return TurnQueue(client, keyspace, job_timeout=60, result_ttl=120)


@pytest.fixture
def replies(client: redis.Redis, keyspace: Keyspace) -> ReplyChannel:
    return ReplyChannel(client, keyspace, reply_ttl=30)


def _job(session: str, seq: int, **attrs: Any) -> TurnJob:
    return TurnJob(
        message_id=f"m{seq}",
        session_key=session,
        text=f"message {seq}",
        submitted_at=1700000000.0 + seq,
        attrs={"platform": "test", "seq": seq, **attrs},
    )


def _fetch(client: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=client, serializer=MsgpackSerializer)


def _claim_all(queue: TurnQueue, worker_id: str) -> list[TurnJob]:
    claimed = []
    while (turn := claim(queue, worker_id, block=0)) is not None:
        claimed.append(turn.job)
        queue.complete(turn, ok=True)
    return claimed


def test_enqueue_claim_complete_round_trip(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    job = _job("chat:1", 0, user_id="u1")
    assert enqueue(queue, "w1", job) is True
    assert queue.pending("w1") == 1 and queue.inflight_count("w1") == 0

    claimed = claim(queue, "w1", block=1)
    assert claimed is not None and claimed.job == job and claimed.worker_id == "w1"
    assert queue.pending("w1") == 0 and queue.inflight_count("w1") == 1
    rq_job = _fetch(client, claimed.job_id)
    assert rq_job.get_status() == JobStatus.STARTED and rq_job.worker_name == "w1"
    assert rq_job.func_name == "agent_cluster.turn" and rq_job.kwargs == job.as_dict()
    queue_name = keyspace.worker_queue("w1")
    started = StartedJobRegistry(queue_name, client, serializer=MsgpackSerializer)
    assert started.get_job_ids(cleanup=False) == [claimed.job_id]

    queue.complete(claimed, ok=True)
    assert queue.inflight_count("w1") == 0
    assert started.get_job_ids(cleanup=False) == []
    assert _fetch(client, claimed.job_id).get_status() == JobStatus.FINISHED
    finished = FinishedJobRegistry(queue_name, client, serializer=MsgpackSerializer)
    assert finished.get_job_ids(cleanup=False) == [claimed.job_id]
    assert 0 < client.ttl(Job.key_for(claimed.job_id)) <= 120


def test_letting_go_of_a_claim_whose_job_left_spares_a_resubmission_of_it(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    """A failover lost the job while a worker held its claim in memory; the caller was told
    and resubmitted the same id. The worker, finding nothing pending, lets go of its stale
    claim: the resubmitted job must still run (``complete`` would end it unrun)."""
    job = _job("chat:1", 0)
    pending = keyspace.session("chat:1").pending
    assert enqueue(queue, "w1", job) is True
    stale = claim(queue, "w1", block=1)
    assert stale is not None
    # What the promoted replica lacks: the job's hash, its pending entry, the claim.
    client.delete(Job.key_for(stale.job_id))
    client.zrem(pending, stale.job_id)
    client.lrem(keyspace.inflight("w1"), 0, stale.job_id)
    assert enqueue(queue, "w1", job) is True  # the resubmission: the same job id
    queue.release(stale)
    fresh = claim(queue, "w1", block=1)
    assert fresh is not None and fresh.job_id == stale.job_id
    assert _fetch(client, fresh.job_id).get_status() == JobStatus.STARTED
    assert client.zscore(pending, fresh.job_id) is not None  # still pending: its turn runs


def test_a_resubmission_puts_back_a_pending_job_that_no_list_holds(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    """After a failover a job can be ``started`` on the promoted replica with no in-flight
    entry (nor pending entry): every resubmission was told "pending" and nothing ever ran it.
    Now the resubmission puts it back and is told "queued": its job was queued again."""
    job = _job("chat:1", 0)
    assert enqueue(queue, "w1", job) is True
    assert enqueue(queue, "w1", job) is False  # pending and queued: nothing added
    assert queue.pending("w1") == 1
    claimed = claim(queue, "w1", block=1)
    assert claimed is not None
    assert enqueue(queue, "w1", job) is False  # pending and in flight: nothing added
    assert queue.pending("w1") == 0 and queue.inflight_count("w1") == 1
    # What the promoted replica holds: the claim's job status, no list entry, no pending entry.
    client.lrem(keyspace.inflight("w1"), 0, claimed.job_id)
    client.zrem(keyspace.session("chat:1").pending, claimed.job_id)
    assert enqueue(queue, "w1", job) is True  # queued again for its caller ...
    again = claim(queue, "w1", block=1)  # ... back on its worker's queue: it runs
    assert again is not None and again.job_id == claimed.job_id
    assert client.zscore(keyspace.session("chat:1").pending, claimed.job_id) is not None


def test_after_a_failover_a_worker_puts_back_its_pending_jobs_that_no_list_holds(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    enqueue(queue, "w1", _job("chat:1", 0))
    enqueue(queue, "w1", _job("chat:2", 0))
    lost = claim(queue, "w1", block=1)
    held = claim(queue, "w1", block=1)
    assert lost is not None and held is not None
    for claimed in (lost, held):  # the promoted replica lacks both in-flight entries
        client.lrem(keyspace.inflight("w1"), 0, claimed.job_id)
    assert queue.rescue_unlisted("w2", set()) == 0  # not w2's jobs
    # ``held`` still runs in this worker's memory: only ``lost`` goes back.
    assert queue.rescue_unlisted("w1", {held.job_id}) == 1
    again = claim(queue, "w1", block=1)
    assert again is not None and again.job_id == lost.job_id
    assert queue.rescue_unlisted("w1", {held.job_id}) == 0  # listed again: left alone


def test_a_failed_turn_lands_in_the_failed_registry_with_its_reason(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    enqueue(queue, "w1", _job("chat:1", 0))
    claimed = claim(queue, "w1", block=1)
    assert claimed is not None
    queue.complete(claimed, ok=False, error="ProviderUnavailable: 503 three times")
    rq_job = _fetch(client, claimed.job_id)
    assert rq_job.get_status() == JobStatus.FAILED
    result = rq_job.latest_result()
    assert result is not None and "503 three times" in (result.exc_string or "")
    failed = FailedJobRegistry(keyspace.worker_queue("w1"), client, serializer=MsgpackSerializer)
    assert failed.get_job_ids(cleanup=False) == [claimed.job_id]
    assert queue.inflight_count("w1") == 0


def test_round_trips_per_enqueue_claim_and_complete(
    queue: TurnQueue, round_trips: Callable[[], int]
) -> None:
    enqueue(queue, "w1", _job("chat:1", 0))  # first use: server version, script load, rq:queues
    assert queue.claim_many("w2", 4, block=0) == []  # first use of the claim script
    counts: dict[str, int] = {}

    before = round_trips()
    assert enqueue(queue, "w1", _job("chat:1", 1))
    counts["enqueue"] = round_trips() - before

    before = round_trips()
    turn = claim(queue, "w1", block=1)
    counts["claim"] = round_trips() - before
    assert turn is not None

    before = round_trips()
    queue.complete(turn, ok=True)
    counts["complete"] = round_trips() - before

    for seq in range(2, 6):
        enqueue(queue, "w1", _job("chat:1", seq))
    before = round_trips()
    batch = queue.claim_many("w1", 8, block=1)
    counts["claim_many"] = round_trips() - before
    assert len(batch) == 5

    before = round_trips()
    assert queue.claim_many("w1", 8, block=0) == []
    counts["empty claim"] = round_trips() - before

    assert counts == {"enqueue": 1, "claim": 1, "complete": 1, "claim_many": 1, "empty claim": 1}


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return list(client.hgetall(key).values())
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind in (b"set",):
        return list(client.smembers(key))
    if kind == b"zset":
        return list(client.zrange(key, 0, -1))
    if kind == b"stream":
        return [v for _id, fields in client.xrange(key) for v in fields.values()]
    raise AssertionError(f"unexpected type {kind!r} of {key!r}")


def test_no_stored_value_is_a_pickle(
    queue: TurnQueue, replies: ReplyChannel, client: redis.Redis, namespace: str
) -> None:
    for seq in range(4):
        enqueue(queue, "w1", _job("chat:1", seq, nested={"a": [1, 2.5, None]}))
    ok, bad, running = (claim(queue, "w1", block=1) for _ in range(3))
    assert ok is not None and bad is not None and running is not None
    queue.complete(ok, ok=True)
    queue.complete(bad, ok=False, error="boom")
    replies.push("chat:1", "m0", {"ok": True, "text": "hi"})
    checked = 0
    for key in client.scan_iter(count=1000):
        if namespace.encode() not in key:
            continue
        for value in _values(client, key):
            for data in (value, _inflate(value)):
                assert not data.startswith(b"\x80"), f"{key!r} holds a pickle"
            checked += 1
    assert checked > 20


def _inflate(value: bytes) -> bytes:
    try:
        return zlib.decompress(value)
    except zlib.error:
        return b""


def test_duplicate_enqueue_of_one_message_yields_one_claim(
    queue: TurnQueue, client: redis.Redis
) -> None:
    job = _job("chat:1", 0)
    assert enqueue(queue, "w1", job) is True
    assert enqueue(queue, "w1", job) is False
    assert enqueue(queue, "w2", job) is False  # re-routed meanwhile: still one pending turn
    assert queue.pending("w1") == 1 and queue.pending("w2") == 0
    claimed = claim(queue, "w1", block=0)
    assert claimed is not None
    assert enqueue(queue, "w1", job) is False  # running: not again
    assert claim(queue, "w1", block=0) is None
    queue.complete(claimed, ok=True)
    # Over: a resubmission is queued again, so the worker re-sends the stored reply.
    assert enqueue(queue, "w1", job) is True
    again = claim(queue, "w1", block=0)
    assert again is not None and again.job == job


def test_the_same_message_id_in_two_sessions_is_two_turns(queue: TurnQueue) -> None:
    assert enqueue(queue, "w1", _job("chat:1", 0)) is True
    assert enqueue(queue, "w1", _job("chat:2", 0)) is True
    assert [j.session_key for j in _claim_all(queue, "w1")] == ["chat:1", "chat:2"]


def test_a_job_id_queued_twice_is_not_run_twice(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    job = _job("chat:1", 0)
    enqueue(queue, "w1", job)
    client.rpush(
        Queue.redis_queue_namespace_prefix + keyspace.worker_queue("w1"), queue.job_id(job)
    )
    claimed = queue.claim_many("w1", 5, block=0)
    assert [c.job for c in claimed] == [job]
    assert queue.inflight_count("w1") == 1


def test_a_job_started_long_ago_counts_as_abandoned_and_runs(
    queue: TurnQueue, client: redis.Redis
) -> None:
    job = _job("chat:1", 0)
    enqueue(queue, "w1", job)
    long_ago = utcformat(now() - timedelta(hours=2))
    client.hset(
        Job.key_for(queue.job_id(job)), mapping={"status": "started", "started_at": long_ago}
    )
    claimed = claim(queue, "w1", block=0)
    assert claimed is not None and claimed.job == job


def test_requeue_moves_a_dead_workers_jobs_to_another_queue_in_order(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    jobs = [_job("chat:1", seq) for seq in range(5)]
    for job in jobs:
        enqueue(queue, "dead", job)
    first, second = claim(queue, "dead", block=0), claim(queue, "dead", block=0)
    assert first is not None and second is not None
    enqueue(queue, "w2", _job("chat:9", 0))  # already waiting on the new owner
    assert queue.inflight_count("dead") == 2 and queue.pending("dead") == 3

    moved = queue.requeue_inflight("dead", to_queue_of=lambda job: "w2")
    assert moved == 5
    assert queue.inflight_count("dead") == 0 and queue.pending("dead") == 0
    started = StartedJobRegistry(
        keyspace.worker_queue("dead"), client, serializer=MsgpackSerializer
    )
    assert started.get_job_ids(cleanup=False) == []
    # older turns go first: in-flight, then queued, then what the new owner had
    assert _claim_all(queue, "w2") == [*jobs, _job("chat:9", 0)]
    assert _fetch(client, queue.job_id(jobs[0])).origin == keyspace.worker_queue("w2")


def test_requeue_routes_each_job_by_its_session(queue: TurnQueue) -> None:
    jobs = [_job(f"chat:{seq % 2}", seq) for seq in range(6)]
    for job in jobs:
        enqueue(queue, "dead", job)
    assert claim(queue, "dead", block=0) is not None
    owners = {"chat:0": "w0", "chat:1": "w1"}
    assert queue.requeue_inflight("dead", to_queue_of=lambda job: owners[job.session_key]) == 6
    assert _claim_all(queue, "w0") == [j for j in jobs if j.session_key == "chat:0"]
    assert _claim_all(queue, "w1") == [j for j in jobs if j.session_key == "chat:1"]


def test_requeue_without_routing_puts_in_flight_jobs_back_in_front(queue: TurnQueue) -> None:
    jobs = [_job("chat:1", seq) for seq in range(4)]
    for job in jobs:
        enqueue(queue, "w1", job)
    queue.claim_many("w1", 2, block=0)
    assert queue.requeue_inflight("w1") == 2
    assert queue.requeue_inflight("w1") == 0
    assert _claim_all(queue, "w1") == jobs


def test_requeue_drops_jobs_whose_hash_is_gone(queue: TurnQueue, client: redis.Redis) -> None:
    jobs = [_job("chat:1", seq) for seq in range(3)]
    for job in jobs:
        enqueue(queue, "dead", job)
    client.delete(Job.key_for(queue.job_id(jobs[1])))
    assert queue.requeue_inflight("dead", to_queue_of=lambda job: "w2") == 2
    assert _claim_all(queue, "w2") == [jobs[0], jobs[2]]


def test_a_job_that_is_not_a_turn_is_failed_not_run(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace, namespace: str
) -> None:
    rq_queue = Queue(keyspace.worker_queue("w1"), connection=client, serializer=MsgpackSerializer)
    rq_queue.enqueue_call("os.system", args=["echo pwned"], job_id=f"{namespace}-evil")
    enqueue(queue, "w1", _job("chat:1", 0))
    claimed = queue.claim_many("w1", 5, block=0)
    assert [c.job.message_id for c in claimed] == ["m0"]
    assert _fetch(client, f"{namespace}-evil").get_status() == JobStatus.FAILED
    assert queue.inflight_count("w1") == 1


def test_a_job_whose_hash_expired_is_dropped_on_claim(
    queue: TurnQueue, client: redis.Redis
) -> None:
    jobs = [_job("chat:1", seq) for seq in range(2)]
    for job in jobs:
        enqueue(queue, "w1", job)
    client.delete(Job.key_for(queue.job_id(jobs[0])))
    claimed = claim(queue, "w1", block=0)
    assert claimed is None  # the first id was dropped, nothing else was moved
    assert not client.exists(Job.key_for(queue.job_id(jobs[0])))
    assert queue.inflight_count("w1") == 0
    assert _claim_all(queue, "w1") == [jobs[1]]


def test_claim_waits_for_a_job_and_returns_none_after_block(queue: TurnQueue) -> None:
    started = time.monotonic()
    assert claim(queue, "w1", block=0.3) is None
    assert 0.25 <= time.monotonic() - started < 2.0
    timer = threading.Timer(0.1, lambda: enqueue(queue, "w1", _job("chat:1", 0)))
    timer.start()
    try:
        claimed = claim(queue, "w1", block=5)
    finally:
        timer.join()
    assert claimed is not None and claimed.job.message_id == "m0"


def test_a_blocking_claim_takes_what_arrives_in_one_round_trip_and_only_that(
    queue: TurnQueue, client: redis.Redis, round_trips: Callable[[], int]
) -> None:
    enqueue(queue, "w1", _job("chat:1", 0))
    running = claim(queue, "w1", block=0)  # a claimed, running turn sits on the in-flight list
    assert running is not None
    # A pop that times out must not take the running turn again.
    assert queue.claim_many("w1", 4, block=0.2) == []
    assert queue.inflight_ids("w1") == [running.job_id]
    enqueue(queue, "w1", _job("chat:2", 0))
    before = round_trips()
    claimed = queue.claim_many("w1", 4, block=1)
    assert round_trips() - before == 1, "pop and claim went in one pipeline"
    assert [turn.job.session_key for turn in claimed] == ["chat:2"]
    assert queue.inflight_ids("w1") == [running.job_id, claimed[0].job_id]


def test_a_blocking_claim_dead_letters_an_id_without_a_job(
    queue: TurnQueue, client: redis.Redis, keyspace: Keyspace
) -> None:
    jobs = [_job("chat:1", seq) for seq in range(2)]
    for job in jobs:
        enqueue(queue, "w1", job)
    client.delete(Job.key_for(queue.job_id(jobs[0])))
    assert queue.claim_many("w1", 1, block=1) == []
    assert queue.inflight_count("w1") == 0
    assert [entry["job"] for entry in queue.dead_letters()] == [queue.job_id(jobs[0])]
    assert _claim_all(queue, "w1") == [jobs[1]]


def test_replies_are_pushed_and_popped_once(
    replies: ReplyChannel, client: redis.Redis, keyspace: Keyspace
) -> None:
    replies.push("chat:1", "m0", {"ok": True, "text": "hello", "usage": {"in": 3}})
    key = keyspace.reply_list("chat:1", "m0")
    assert 0 < client.pttl(key) <= 30_000
    assert replies.wait("chat:1", "m0", 1) == {"ok": True, "text": "hello", "usage": {"in": 3}}
    assert replies.wait("chat:1", "m0", 0) is None


def test_waiting_for_a_reply_times_out_with_none(replies: ReplyChannel) -> None:
    started = time.monotonic()
    assert replies.wait("chat:1", "never", 0.3) is None
    assert 0.25 <= time.monotonic() - started < 2.0


def test_a_wait_longer_than_the_socket_timeout_still_gets_the_reply(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    # a client whose socket gives up after 0.4 s: the wait is cut into shorter blocks
    options = client.connection_pool.connection_kwargs
    impatient: redis.Redis
    if "server" in options:
        impatient = fakeredis.FakeRedis(server=options["server"], socket_timeout=0.4)
    else:
        impatient = redis.Redis(host=options["host"], port=options["port"], socket_timeout=0.4)
    assert impatient.connection_pool.connection_kwargs["socket_timeout"] == 0.4
    try:
        channel = ReplyChannel(impatient, keyspace, reply_ttl=30)
        pusher = ReplyChannel(client, keyspace, reply_ttl=30)
        timer = threading.Timer(1.0, lambda: pusher.push("chat:1", "m0", {"ok": True}))
        timer.start()
        try:
            assert channel.wait("chat:1", "m0", 5) == {"ok": True}
        finally:
            timer.join()
    finally:
        impatient.close()


def test_claim_loop_and_executor_answer_200_turns_in_session_order(
    queue: TurnQueue, replies: ReplyChannel
) -> None:
    lock = threading.Lock()
    ran: dict[str, list[int]] = defaultdict(list)

    def handler(job: TurnJob) -> None:
        seq = int(job.attrs["seq"])
        with lock:
            ran[job.session_key].append(seq)
        replies.push(job.session_key, job.message_id, {"ok": True, "seq": seq})

    executor = TurnExecutor(handler=handler, concurrency=32, name="e2e")
    loop = ClaimLoop(queue=queue, worker_id="w1", executor=executor, block=0.2)
    loop.start()
    jobs = [_job(f"chat:{s}", seq) for seq in range(10) for s in range(20)]
    try:
        for job in jobs:
            enqueue(queue, "w1", job)
        for job in jobs:
            reply = replies.wait(job.session_key, job.message_id, 20)
            assert reply == {"ok": True, "seq": job.attrs["seq"]}, job
    finally:
        assert loop.stop(timeout=10)
        assert executor.wait_idle(timeout=10)
        assert executor.shutdown(wait=True, timeout=10)
    assert dict(ran) == {f"chat:{s}": list(range(10)) for s in range(20)}
    assert loop.claimed == 200
    assert queue.pending("w1") == 0 and queue.inflight_count("w1") == 0
