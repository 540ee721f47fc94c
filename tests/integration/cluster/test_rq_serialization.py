"""rq with the msgpack serializer on the real redis-server: jobs run, nothing is pickled."""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.exceptions import DeserializationError
from rq.job import Job

from cluster.keys import Keyspace
from cluster.serialization import MsgpackSerializer, unpack
from tests.integration.cluster.jobs import fail, shout

pytestmark = pytest.mark.integration


@pytest.fixture
def rq_queue(redis_client: redis.Redis, namespace: str) -> Iterator[Queue]:
    name = Keyspace(namespace).worker_queue("w1")
    q = Queue(name, connection=redis_client, serializer=MsgpackSerializer)
    yield q
    for key in redis_client.scan_iter(match="rq:*", count=1000):
        if namespace.encode() in key:
            redis_client.delete(key)
        elif redis_client.type(key) == b"set":  # rq's global registries (rq:queues, rq:workers)
            ours = [m for m in redis_client.smembers(key) if namespace.encode() in m]
            if ours:
                redis_client.srem(key, *ours)


def _raw_data(client: redis.Redis, job: Job) -> bytes:
    raw = client.hget(job.key, "data")
    assert isinstance(raw, bytes)
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return raw


def _looks_pickled(data: bytes) -> bool:
    try:
        pickle.loads(data)
    except Exception:
        return False
    return True


def test_job_round_trips_through_a_worker_without_pickle(
    rq_queue: Queue, redis_client: redis.Redis, namespace: str
) -> None:
    job = rq_queue.enqueue(shout, "hi", times=2, meta={"session": "s1"})
    data = _raw_data(redis_client, job)
    assert not data.startswith(b"\x80") and not _looks_pickled(data)
    assert unpack(data) == [f"{shout.__module__}.shout", None, ["hi"], {"times": 2}]

    worker = SimpleWorker(
        [rq_queue],
        connection=redis_client,
        serializer=MsgpackSerializer,
        name=f"{namespace}-worker",
    )
    assert worker.work(burst=True)
    fetched = Job.fetch(job.id, connection=redis_client, serializer=MsgpackSerializer)
    assert fetched.is_finished
    assert fetched.return_value() == {"text": "HIHI", "parts": ["hi", "hi"]}
    assert fetched.meta == {"session": "s1"}
    for key in redis_client.scan_iter(match=f"rq:*{job.id}*"):
        if redis_client.type(key) == b"hash":
            for field, value in redis_client.hgetall(key).items():
                assert isinstance(value, bytes) and not _looks_pickled(value), (
                    f"{key!r} {field!r} holds a pickle"
                )


def test_failing_job_records_the_error(
    rq_queue: Queue, redis_client: redis.Redis, namespace: str
) -> None:
    job = rq_queue.enqueue(fail, "bad input")
    worker = SimpleWorker(
        [rq_queue],
        connection=redis_client,
        serializer=MsgpackSerializer,
        name=f"{namespace}-worker",
    )
    worker.work(burst=True)
    fetched = Job.fetch(job.id, connection=redis_client, serializer=MsgpackSerializer)
    assert fetched.is_failed
    assert "bad input" in (fetched.latest_result().exc_string or "")  # type: ignore[union-attr]


def test_a_pickled_job_is_refused_not_executed(rq_queue: Queue, redis_client: redis.Redis) -> None:
    job = rq_queue.enqueue(shout, "x")
    redis_client.hset(
        job.key, "data", zlib.compress(pickle.dumps(("os.system", None, ("echo pwned",), {})))
    )
    fetched = Job.fetch(job.id, connection=redis_client, serializer=MsgpackSerializer)
    with pytest.raises(DeserializationError) as err:
        _ = fetched.func_name
    assert isinstance(err.value.__cause__, ValueError) and "msgpack" in str(err.value.__cause__)
