"""rq's data format, spoken by the turn queue: queues, job hashes, registries, results.

The cluster runs turn jobs itself (``cluster.transport``, ``cluster.claims``)
but stores them the way rq does, through rq's own classes and always with
:class:`~cluster.serialization.MsgpackSerializer` (never pickle), so rq's
tooling can inspect the queues. :class:`RqFormat` is everything that knows
that format: the queue objects and their keys (:class:`QueueKeys`), the
fields of a new job hash, the started stamp and registry score of a claim,
and what an ended job writes (status, ``exc_info``, registry, result record).
The job "function" is the tag :data:`~cluster.jobs.TURN_JOB_TAG` (no
callable): an rq worker given such a job would fail it, never run it.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat

from cluster.jobs import TURN_JOB_TAG, ClaimRef, JobFinish, TurnJob
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.serialization import MsgpackSerializer

__all__ = ["QueueKeys", "RqFormat"]

# Seconds added to the job timeout for the started-registry score, so rq's
# registry cleanup never declares a turn abandoned while it may still run.
_STARTED_MARGIN = 60


@dataclass(frozen=True)
class QueueKeys:
    """rq's keys of one worker queue."""

    name: str
    queue: str
    started: str
    finished: str
    failed: str


class RqFormat:
    """rq's names and records for the worker queues of one namespace (thread-safe)."""

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, job_timeout: int, result_ttl: int
    ) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the worker queues.
            job_timeout: Whole seconds a turn may run (rq's job timeout).
            result_ttl: Whole seconds a finished or failed job is kept.
        """
        self._client = client
        self._keyspace = keyspace
        self.job_timeout = job_timeout
        self.result_ttl = result_ttl
        self._lock = threading.Lock()
        self._queues: dict[str, Queue] = {}
        self._registered: set[str] = set()
        self._queue_keys: dict[str, QueueKeys] = {}

    # -- queues and keys -------------------------------------------------------

    def queue(self, worker_id: str) -> Queue:
        """rq's queue object of a worker."""
        name = self._keyspace.worker_queue(worker_id)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = Queue(
                    name,
                    connection=self._client,
                    serializer=MsgpackSerializer,
                    default_timeout=self.job_timeout,
                )
                self._queues[name] = queue
            return queue

    def keys(self, queue_name: str) -> QueueKeys:
        """rq's keys of the queue named ``queue_name``."""
        known = self._queue_keys.get(queue_name)
        if known is not None:
            return known
        client, serializer = self._client, MsgpackSerializer
        made = self._queue_keys[queue_name] = QueueKeys(
            name=queue_name,
            queue=Queue.redis_queue_namespace_prefix + queue_name,
            started=StartedJobRegistry(queue_name, client, serializer=serializer).key,
            finished=FinishedJobRegistry(queue_name, client, serializer=serializer).key,
            failed=FailedJobRegistry(queue_name, client, serializer=serializer).key,
        )
        return made

    def worker_keys(self, worker_id: str) -> QueueKeys:
        """rq's keys of a worker's queue."""
        return self.keys(self._keyspace.worker_queue(worker_id))

    def register_queue(self, worker_id: str) -> None:
        """List a worker's queue in ``rq:queues`` (rq's tooling reads it); once per process."""
        queue = self.queue(worker_id)
        with self._lock:
            if queue.name in self._registered:
                return
            self._registered.add(queue.name)
        self._client.sadd(Queue.redis_queues_keys, queue.key)

    @staticmethod
    def job_key(job_id: str) -> str:
        """The key of a job's hash (``rq:job:ID``)."""
        return Job.key_for(job_id)

    @staticmethod
    def job_key_prefix() -> str:
        """What a job id is appended to for its hash's key (for ``turn_claim.lua``)."""
        return Job.redis_job_namespace_prefix

    # -- records -----------------------------------------------------------------

    def job_fields(self, worker_id: str, job: TurnJob, job_id: str) -> list[Any]:
        """The field/value pairs of a new turn job's hash, flat, status left out."""
        rq_job = self.queue(worker_id).create_job(
            TURN_JOB_TAG,
            kwargs=job.as_dict(),
            job_id=job_id,
            timeout=self.job_timeout,
            result_ttl=self.result_ttl,
            failure_ttl=self.result_ttl,
            description=f"turn {job.message_id}",
        )
        rq_job.enqueued_at = now()
        fields: list[Any] = []
        for name, value in rq_job.to_dict().items():
            if name == "status" or value is None:
                continue
            fields += [name, value.value if isinstance(value, JobStatus) else value]
        return fields

    def started_stamp(self) -> tuple[str, int]:
        """A claim's ``started_at`` stamp and started-registry score.

        The score is when rq's registry cleanup would call the claim abandoned:
        the job timeout plus a margin from now.
        """
        return utcformat(now()), current_timestamp() + self.job_timeout + _STARTED_MARGIN

    def job_status(self, job_id: str) -> str | None:
        """A job's rq status, ``None`` when its hash is gone."""
        status = self._client.hget(Job.key_for(job_id), "status")
        return None if status is None else text(status)

    def end_job(
        self,
        pipe: Any,
        keys: QueueKeys,
        *,
        worker_id: str,
        job_id: str,
        execution_id: str,
        ok: bool,
        error: str | None,
    ) -> None:
        """Queue on ``pipe`` what rq records for a job that ended.

        Its claim leaves the started registry, the job hash gets its status
        (and, on failure, ``exc_info``), the job joins the finished or failed
        registry, an rq result record is written, and all of it expires after
        ``result_ttl``.
        """
        job_key = Job.key_for(job_id)
        ended = now()
        status = (JobStatus.FINISHED if ok else JobStatus.FAILED).value
        exc_string = None if ok else (error or "turn failed")
        result = Result(
            job_id=job_id,
            type=Result.Type.SUCCESSFUL if ok else Result.Type.FAILED,
            connection=self._client,
            exc_string=exc_string,
            worker_name=worker_id,
            serializer=MsgpackSerializer,
            execution_id=execution_id,
            execution_ended_at=ended,
        )
        pipe.zrem(keys.started, f"{job_id}:{execution_id}")
        pipe.hset(job_key, mapping={"status": status, "ended_at": utcformat(ended)})
        if exc_string is not None:
            pipe.hset(job_key, "exc_info", zlib.compress(exc_string.encode("utf-8", "replace")))
        pipe.expire(job_key, self.result_ttl)
        registry = keys.finished if ok else keys.failed
        pipe.zadd(registry, {job_id: current_timestamp() + self.result_ttl})
        result.save(ttl=self.result_ttl, pipeline=pipe)  # type: ignore[no-untyped-call]

    def finish_for(self, claim: ClaimRef, inflight: str) -> JobFinish:
        """The keys and arguments with which ``session_commit.lua`` finishes ``claim``'s job.

        Args:
            claim: The claimed job.
            inflight: The claiming worker's in-flight list.
        """
        keys = self.keys(claim.queue_name)
        ended = now()
        result = Result(
            job_id=claim.job_id,
            type=Result.Type.SUCCESSFUL,
            connection=self._client,
            worker_name=claim.worker_id,
            serializer=MsgpackSerializer,
            execution_id=claim.execution_id,
            execution_ended_at=ended,
        )
        fields = [part for pair in result.serialize().items() for part in pair]
        return JobFinish(
            keys=(
                inflight,
                keys.started,
                Job.key_for(claim.job_id),
                keys.finished,
                Result.get_key(claim.job_id),  # type: ignore[no-untyped-call]
            ),
            args=(
                claim.job_id,
                f"{claim.job_id}:{claim.execution_id}",
                utcformat(ended),
                self.result_ttl,
                current_timestamp() + self.result_ttl,
                *fields,
            ),
        )
