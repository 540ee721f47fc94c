"""Turn jobs between coordinator and workers: rq's queues, job hashes and registries, our executor.

The coordinator puts each accepted message on its owner's rq queue as an rq
job (:meth:`TurnQueue.enqueue`); the worker's claim loop moves job ids from
that queue to its in-flight list (:meth:`TurnQueue.claim_many`), runs the
turns on its own thread pool (``worker.executor``), and records each outcome
in rq's registries (:meth:`TurnQueue.complete`). Replies travel back on a
per-message list (:class:`ReplyChannel`).

Why not rq's workers: the default worker forks per job, losing the
process's agent cache, and ``SimpleWorker`` runs one job at a time with ~20
round trips each, while a worker process needs 32+ I/O-bound turns in flight
sharing one cache. So this module speaks rq's data format (the job hash,
``rq:queue:*``, the started/finished/failed registries, result streams, all
through rq's own classes and always with :class:`MsgpackSerializer`, never
pickle), so rq's tooling can inspect the queues, but runs the jobs itself.
The job function reference is the string :data:`TURN_FUNCTION`; nothing
imports or calls it through rq.

Round trips (measured by ``tests/integration/cluster/test_transport.py``):

* enqueue: 1 (rq's atomic unique-enqueue script). The first enqueue through
  a client also asks the server version and loads the script, and the first
  on each queue registers it in ``rq:queues`` (5 in all); a duplicate adds a
  WATCH/HGET status check;
* claim: 2 (``LMOVE`` queue -> in-flight, then one pipeline that reads the
  job, marks it STARTED and adds it to the started registry);
  :meth:`TurnQueue.claim_many` claims up to ``limit`` jobs in the same 2;
  an empty queue adds the blocking ``BLMOVE``;
* complete: 1 (one MULTI/EXEC pipeline).

Limits: rq's keys carry no hash tag, so the queue, the in-flight list and the
job hashes live on different Redis Cluster slots; this module targets a
single Redis (or a primary with replicas), like rq itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis
from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat, utcparse

from cluster.errors import AgentClusterError, ConfigError, InvalidMessage
from cluster.keys import Keyspace
from cluster.serialization import MsgpackSerializer, pack, unpack

__all__ = [
    "TURN_FUNCTION",
    "ClaimedTurn",
    "ReplyChannel",
    "TurnJob",
    "TurnQueue",
    "job_id_for",
]

log = logging.getLogger("cluster.transport")

TURN_FUNCTION = "worker.turns.run_turn"
"""The rq function reference of every turn job (informational: our executor runs it)."""

# rq job ids are [A-Za-z0-9_-]+; other message ids are digested (see job_id_for).
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Statuses in which a job is still to run or running: a second enqueue is a no-op.
_PENDING_STATUSES = frozenset(
    s.value for s in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
)
# Seconds added to the job timeout for the started-registry score, so rq's
# registry cleanup never declares a turn abandoned while it may still run.
_STARTED_MARGIN = 60
# Blocking reads: the shortest server-side block we ask for (Redis treats a
# timeout that rounds to 0 ms as "forever"), the pause when a server answers a
# blocking call at once (fakeredis' BLMOVE), and the socket-timeout headroom.
_MIN_BLOCK = 0.01
_POLL_INTERVAL = 0.02
_SOCKET_MARGIN = 1.0
_WATCH_ATTEMPTS = 50

T = TypeVar("T")


def job_id_for(namespace: str, session_key: str, message_id: str) -> str:
    """Return the rq job id of a message.

    rq's job keys (``rq:job:ID``) are shared by every namespace on a Redis,
    and a message id is only unique within its session (like the session
    store's processed set), so the id is scoped to both:
    ``<namespace>-<message id>-<12 hex digits of a digest>`` when the message
    id is short and made of rq's characters (``[A-Za-z0-9_-]``), otherwise
    ``<namespace>-<40 hex digits>``. The digest is SHA-256 over namespace,
    session key and message id, so one message always maps to one job id.
    """
    digest = hashlib.sha256(
        "\0".join((namespace, session_key, message_id)).encode("utf-8", "surrogatepass")
    ).hexdigest()
    prefix = namespace.replace(".", "_")
    if _JOB_ID_RE.match(message_id):
        return f"{prefix}-{message_id}-{digest[:12]}"
    return f"{prefix}-{digest[:40]}"


@dataclass(frozen=True)
class TurnJob:
    """One accepted user message, as carried by the queue (msgpack-safe).

    Attributes:
        message_id: Caller-chosen id; a message is answered once per id.
        session_key: The conversation the message belongs to.
        text: The user's message.
        submitted_at: Wall-clock time (``time.time()``) the coordinator accepted it.
        attrs: Plain-data extras (platform, user_id, ...), msgpack-safe.
    """

    message_id: str
    session_key: str
    text: str
    submitted_at: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("message_id", "session_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidMessage(f"turn job {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.text, str):
            raise InvalidMessage(f"turn job text must be a string, got {type(self.text).__name__}")
        stamp = self.submitted_at
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not math.isfinite(stamp)
        ):
            raise InvalidMessage(
                f"turn job submitted_at must be a finite number (time.time()), got {stamp!r}"
            )
        object.__setattr__(self, "submitted_at", float(stamp))
        if not isinstance(self.attrs, Mapping):
            raise InvalidMessage(
                f"turn job attrs must be a mapping, got {type(self.attrs).__name__}"
            )
        bad_keys = [k for k in self.attrs if not isinstance(k, str)]
        if bad_keys:
            raise InvalidMessage(f"turn job attrs keys must be strings, got {bad_keys[0]!r}")
        attrs = dict(self.attrs)
        try:
            pack(attrs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"turn job attrs must be plain data (str, int, float, bool, None, bytes, "
                f"list, dict): {exc}"
            ) from None
        object.__setattr__(self, "attrs", attrs)

    def as_dict(self) -> dict[str, Any]:
        """The job as plain data (the rq job's kwargs)."""
        return {
            "message_id": self.message_id,
            "session_key": self.session_key,
            "text": self.text,
            "submitted_at": self.submitted_at,
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TurnJob:
        """Rebuild a job from :meth:`as_dict` output; unknown keys are ignored.

        Raises:
            InvalidMessage: ``data`` is not a mapping, a key is missing or a
                value has the wrong type (the message names which).
        """
        if not isinstance(data, Mapping):
            raise InvalidMessage(f"turn job must be a mapping, got {type(data).__name__}")
        missing = [
            k for k in ("message_id", "session_key", "text", "submitted_at") if k not in data
        ]
        if missing:
            raise InvalidMessage(f"turn job is missing {', '.join(missing)}")
        attrs = data.get("attrs", {})
        return cls(
            message_id=data["message_id"],
            session_key=data["session_key"],
            text=data["text"],
            submitted_at=data["submitted_at"],
            attrs={} if attrs is None else attrs,
        )


@dataclass(frozen=True)
class ClaimedTurn:
    """A turn a worker claimed: the job plus what :meth:`TurnQueue.complete` needs.

    Attributes:
        job: The turn.
        worker_id: The worker whose in-flight list holds it.
        job_id: The rq job id.
        queue_name: The rq queue it was claimed from.
        execution_id: This claim's id (the started-registry entry is ``job_id:execution_id``).
        claimed_at: Wall-clock time of the claim.
    """

    job: TurnJob
    worker_id: str
    job_id: str
    queue_name: str
    execution_id: str
    claimed_at: float


@dataclass(frozen=True)
class _QueueKeys:
    name: str
    queue: str
    started: str
    finished: str
    failed: str


@dataclass
class _RequeuePlan:
    groups: dict[str, list[str]] = field(default_factory=dict)  # target worker -> job ids
    broken: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)
    moved: int = 0


class TurnQueue:
    """The worker queues of one namespace, in rq's format, run by our executor.

    Thread-safe: share one per process. Blocking claims are cut into slices
    shorter than the client's socket timeout, so any client works; a client
    from :func:`cluster.connection.blocking_client` just needs fewer slices.
    """

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, job_timeout: float, result_ttl: float
    ) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the worker queues and in-flight lists.
            job_timeout: Seconds a turn may run (rq's job timeout; also how long
                a claim stays in rq's started registry before rq would call it abandoned).
            result_ttl: Seconds a finished or failed job (hash, result, registry
                entry) is kept.
        """
        for name, value in (("job_timeout", job_timeout), ("result_ttl", result_ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"TurnQueue {name} must be seconds > 0, got {value!r}")
        self._client = client
        self._keyspace = keyspace
        self._job_timeout = max(1, math.ceil(job_timeout))
        self._result_ttl = max(1, math.ceil(result_ttl))
        self._lock = threading.Lock()
        self._queues: dict[str, Queue] = {}
        self._registered: set[str] = set()

    # -- rq objects and keys -------------------------------------------------

    def _queue(self, worker_id: str) -> Queue:
        name = self._keyspace.worker_queue(worker_id)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = Queue(
                    name,
                    connection=self._client,
                    serializer=MsgpackSerializer,
                    default_timeout=self._job_timeout,
                )
                self._queues[name] = queue
            return queue

    def _keys(self, queue_name: str) -> _QueueKeys:
        client, serializer = self._client, MsgpackSerializer
        return _QueueKeys(
            name=queue_name,
            queue=Queue.redis_queue_namespace_prefix + queue_name,
            started=StartedJobRegistry(queue_name, client, serializer=serializer).key,
            finished=FinishedJobRegistry(queue_name, client, serializer=serializer).key,
            failed=FailedJobRegistry(queue_name, client, serializer=serializer).key,
        )

    def _worker_keys(self, worker_id: str) -> _QueueKeys:
        return self._keys(self._keyspace.worker_queue(worker_id))

    # -- enqueue -----------------------------------------------------------------

    def job_id(self, job: TurnJob) -> str:
        """The rq job id of a turn in this namespace (see :func:`job_id_for`)."""
        return job_id_for(self._keyspace.namespace, job.session_key, job.message_id)

    def enqueue(self, worker_id: str, job: TurnJob) -> bool:
        """Put a turn on a worker's queue, once per message id.

        A message id whose job is still queued or running (on any worker's
        queue) is not queued again. One whose job has finished or failed is
        queued again: the worker answers it from the stored reply (a caller
        that lost the reply gets it re-pushed) without running the turn twice.

        Args:
            worker_id: The owner chosen by the router.
            job: The turn.

        Returns:
            ``True`` if the job was queued, ``False`` if it was already pending.
        """
        queue = self._queue(worker_id)
        rq_job = queue.create_job(
            TURN_FUNCTION,
            kwargs=job.as_dict(),
            job_id=self.job_id(job),
            timeout=self._job_timeout,
            result_ttl=self._result_ttl,
            failure_ttl=self._result_ttl,
            description=f"turn {job.message_id}",
        )
        if self._enqueue_unique(queue, rq_job):
            return True
        if not self._forget_if_done(rq_job.key):
            return False
        return self._enqueue_unique(queue, rq_job)

    def _enqueue_unique(self, queue: Queue, rq_job: Job) -> bool:
        with self._client.pipeline() as pipe:
            # With unique=True rq runs its atomic check-save-push script on the
            # connection at once and leaves only "SADD rq:queues" in the pipeline,
            # which is needed once per queue.
            try:
                queue.enqueue_job(rq_job, pipeline=pipe, unique=True)
            except DuplicateJobError:
                return False
            with self._lock:
                first = queue.name not in self._registered
                self._registered.add(queue.name)
            if first:
                pipe.execute()
        return True

    def _forget_if_done(self, job_key: str) -> bool:
        """Delete a job hash whose job is over; False if it is still pending."""
        with self._client.pipeline() as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    pipe.watch(job_key)  # type: ignore[no-untyped-call]
                    status = pipe.hget(job_key, "status")
                    if status is not None and _text(status) in _PENDING_STATUSES:
                        return False
                    pipe.multi()
                    pipe.delete(job_key)
                    pipe.execute()
                    return True
                except WatchError:
                    continue
        return False

    # -- claim ---------------------------------------------------------------

    def claim(self, worker_id: str, *, block: float) -> ClaimedTurn | None:
        """Claim the next turn of a worker's queue (see :meth:`claim_many`)."""
        claimed = self.claim_many(worker_id, 1, block=block)
        return claimed[0] if claimed else None

    def claim_many(self, worker_id: str, limit: int, *, block: float) -> list[ClaimedTurn]:
        """Claim up to ``limit`` turns, oldest first, waiting up to ``block`` s for one.

        Each job id moves atomically from the queue to the worker's in-flight
        list (so a crash never loses it: recovery requeues the in-flight list),
        then one pipeline reads the jobs, marks them STARTED and adds them to
        rq's started registry. Jobs whose hash is gone are dropped; jobs that
        cannot be decoded are failed at once; a job another claim is running
        (STARTED less than the job timeout ago) is not run twice, while an
        older STARTED one counts as abandoned and runs.

        Args:
            worker_id: The claiming worker.
            limit: Most turns to claim (the executor's free capacity).
            block: Seconds to wait when the queue is empty; 0 does not wait.

        Returns:
            The claimed turns, possibly fewer than ``limit`` or none.
        """
        if limit < 1:
            return []
        keys = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        moved: list[Any]
        if limit == 1:
            moved = [self._client.lmove(keys.queue, inflight, "LEFT", "RIGHT")]
        else:
            with self._client.pipeline(transaction=False) as pipe:
                for _ in range(limit):
                    pipe.lmove(keys.queue, inflight, "LEFT", "RIGHT")
                moved = pipe.execute()
        moved = [job_id for job_id in moved if job_id is not None]
        if not moved and block > 0:
            moved = [_blocking_read(self._client, self._blmove(keys.queue, inflight), block)]
            moved = [job_id for job_id in moved if job_id is not None]
        if not moved:
            return []
        return self._start(worker_id, keys, [_text(job_id) for job_id in moved])

    def _blmove(self, source: str, destination: str) -> Callable[[float], Any]:
        def move(seconds: float) -> Any:
            # Redis >= 6 takes a decimal timeout; redis-py's hint says int.
            return self._client.blmove(source, destination, seconds, "LEFT", "RIGHT")  # type: ignore[arg-type]

        return move

    def _start(self, worker_id: str, keys: _QueueKeys, job_ids: list[str]) -> list[ClaimedTurn]:
        claimed_at = time.time()
        started = now()
        stamp = utcformat(started)
        # A STARTED job claimed more recently than this is running elsewhere.
        fresh_since = started - timedelta(seconds=self._job_timeout + _STARTED_MARGIN)
        score = current_timestamp() + self._job_timeout + _STARTED_MARGIN
        executions = [(job_id, uuid.uuid4().hex) for job_id in job_ids]
        with self._client.pipeline(transaction=False) as pipe:
            for job_id, execution_id in executions:
                job_key = Job.key_for(job_id)
                pipe.hmget(job_key, ["data", "status", "started_at"])
                pipe.hset(
                    job_key,
                    mapping={
                        "status": JobStatus.STARTED.value,
                        "started_at": stamp,
                        "last_heartbeat": stamp,
                        "worker_name": worker_id,
                    },
                )
                pipe.zadd(keys.started, {f"{job_id}:{execution_id}": score})
            results = pipe.execute()
        claimed: list[ClaimedTurn] = []
        undo: list[tuple[str, str, bool]] = []  # (job id, execution id, delete stub hash)
        for index, (job_id, execution_id) in enumerate(executions):
            data, status, started_at = results[3 * index]
            if data is None:
                log.warning(
                    "job %s on %s has no job hash (expired or deleted); dropped", job_id, keys.name
                )
                undo.append((job_id, execution_id, True))
                continue
            if _running_since(status, started_at, fresh_since):
                log.warning(
                    "job %s on %s is already running elsewhere; not run twice", job_id, keys.name
                )
                undo.append((job_id, execution_id, False))
                continue
            try:
                turn = _decode_turn(data)
            except InvalidMessage as exc:
                log.error(
                    "job %s on %s is not a turn job: %s; marked failed", job_id, keys.name, exc
                )
                self._finish(worker_id, keys, job_id, execution_id, ok=False, error=str(exc))
                continue
            claimed.append(
                ClaimedTurn(turn, worker_id, job_id, keys.name, execution_id, claimed_at)
            )
        if undo:
            inflight = self._keyspace.inflight(worker_id)
            with self._client.pipeline(transaction=False) as pipe:
                for job_id, execution_id, delete in undo:
                    pipe.lrem(inflight, 1, job_id)
                    pipe.zrem(keys.started, f"{job_id}:{execution_id}")
                    if delete:
                        pipe.delete(Job.key_for(job_id))
                pipe.execute()
        return claimed

    # -- complete --------------------------------------------------------------

    def complete(self, claimed: ClaimedTurn, *, ok: bool, error: str | None = None) -> None:
        """Record a claimed turn's outcome: FINISHED or FAILED, off the in-flight list.

        One MULTI/EXEC pipeline: removes the job id from the in-flight list and
        its claim from the started registry, sets the job status (and, on
        failure, rq's ``exc_info``), adds the job to the finished or failed
        registry, writes an rq result record and lets all of it expire after
        ``result_ttl``.

        Args:
            claimed: What :meth:`claim_many` returned.
            ok: Whether the turn's handler returned normally.
            error: What went wrong (stored for ``ok=False``).
        """
        keys = self._keys(claimed.queue_name)
        self._finish(
            claimed.worker_id, keys, claimed.job_id, claimed.execution_id, ok=ok, error=error
        )

    def _finish(
        self,
        worker_id: str,
        keys: _QueueKeys,
        job_id: str,
        execution_id: str,
        *,
        ok: bool,
        error: str | None,
    ) -> None:
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
        with self._client.pipeline(transaction=True) as pipe:
            pipe.lrem(self._keyspace.inflight(worker_id), 1, job_id)
            pipe.zrem(keys.started, f"{job_id}:{execution_id}")
            pipe.hset(job_key, mapping={"status": status, "ended_at": utcformat(ended)})
            if exc_string is not None:
                pipe.hset(job_key, "exc_info", zlib.compress(exc_string.encode("utf-8", "replace")))
            pipe.expire(job_key, self._result_ttl)
            registry = keys.finished if ok else keys.failed
            pipe.zadd(registry, {job_id: current_timestamp() + self._result_ttl})
            result.save(ttl=self._result_ttl, pipeline=pipe)  # type: ignore[no-untyped-call]
            pipe.execute()

    # -- recovery ----------------------------------------------------------------

    def requeue_inflight(
        self, worker_id: str, *, to_queue_of: Callable[[TurnJob], str] | None = None
    ) -> int:
        """Put a dead or drained worker's claimed (and queued) turns back on queues.

        Only for a worker that is dead or has stopped claiming and finished its
        turns: an in-flight turn that is still running would run again (the
        session store answers a message once, so the caller still gets one
        reply, but the work is wasted).

        The moved ids go to the *front* of their target queue, in-flight ones
        first, each group in its original order: they are older than anything
        queued there since, so a session's messages keep their order. The move
        is one transaction guarded by ``WATCH`` on the worker's lists.

        Args:
            worker_id: The dead or drained worker.
            to_queue_of: Names the worker whose queue should get each job
                (the coordinator's routing by session). ``None`` puts the
                in-flight jobs back on the same worker's queue and leaves its
                queued jobs where they are.

        Returns:
            How many jobs moved: every in-flight job put back on a queue plus
            every queued job moved to another worker's queue. Jobs whose hash
            is gone are dropped; undecodable ones are marked failed.
        """
        source = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    pipe.watch(inflight, source.queue)  # type: ignore[no-untyped-call]
                    running = _unique(_text(j) for j in pipe.lrange(inflight, 0, -1))
                    running_set = set(running)
                    queued: list[str] = []
                    if to_queue_of is not None:
                        waiting = _unique(_text(j) for j in pipe.lrange(source.queue, 0, -1))
                        queued = [j for j in waiting if j not in running_set]
                    if not running and not queued:
                        return 0
                    plan = self._plan_requeue(worker_id, running, queued, to_queue_of)
                    members: list[Any] = list(self._client.zrange(source.started, 0, -1))
                    stale = [_text(m) for m in members if _text(m).split(":", 1)[0] in running_set]
                    pipe.multi()
                    pipe.delete(inflight)
                    if to_queue_of is not None:
                        pipe.delete(source.queue)  # rebuilt below from its own group
                    for target_worker, job_ids in plan.groups.items():
                        target = self._worker_keys(target_worker)
                        pipe.lpush(target.queue, *reversed(job_ids))
                        for job_id in job_ids:
                            pipe.hset(
                                Job.key_for(job_id),
                                mapping={"origin": target.name, "status": JobStatus.QUEUED.value},
                            )
                    for job_id, reason in plan.broken:
                        pipe.hset(
                            Job.key_for(job_id),
                            mapping={
                                "status": JobStatus.FAILED.value,
                                "exc_info": zlib.compress(reason.encode("utf-8", "replace")),
                            },
                        )
                        pipe.zadd(source.failed, {job_id: current_timestamp() + self._result_ttl})
                    if stale:
                        pipe.zrem(source.started, *stale)
                    pipe.execute()
                    return plan.moved
                except WatchError:
                    continue
        raise AgentClusterError(
            f"could not requeue worker {worker_id!r}: its queue and in-flight list kept changing "
            f"during {_WATCH_ATTEMPTS} attempts; is the worker still claiming? stop it first"
        )

    def _plan_requeue(
        self,
        worker_id: str,
        running: list[str],
        queued: list[str],
        to_queue_of: Callable[[TurnJob], str] | None,
    ) -> _RequeuePlan:
        plan = _RequeuePlan()
        ids = running + queued
        with self._client.pipeline(transaction=False) as reads:
            for job_id in ids:
                reads.hget(Job.key_for(job_id), "data")
            payloads = reads.execute()
        running_set = set(running)
        for job_id, data in zip(ids, payloads, strict=True):
            if data is None:
                log.warning("requeue of %s: job %s has no job hash; dropped", worker_id, job_id)
                continue
            target = worker_id
            if to_queue_of is not None:
                try:
                    turn = _decode_turn(data)
                except InvalidMessage as exc:
                    plan.broken.append((job_id, f"not a turn job: {exc}"))
                    continue
                target = to_queue_of(turn)
            plan.groups.setdefault(target, []).append(job_id)
            if job_id in running_set or target != worker_id:
                plan.moved += 1
        return plan

    # -- counts ------------------------------------------------------------------

    def pending(self, worker_id: str) -> int:
        """Number of job ids waiting on a worker's queue."""
        return int(self._client.llen(self._worker_keys(worker_id).queue))

    def inflight_count(self, worker_id: str) -> int:
        """Number of job ids a worker has claimed and not completed."""
        return int(self._client.llen(self._keyspace.inflight(worker_id)))


class ReplyChannel:
    """Per-message reply lists: the worker pushes one reply, the caller pops it.

    :meth:`wait` blocks in slices shorter than the client's socket timeout, so
    it works on any client; a client from
    :func:`cluster.connection.blocking_client` just needs fewer slices. On
    fakeredis it polls every few milliseconds instead of spinning.
    """

    def __init__(self, client: redis.Redis, keyspace: Keyspace, *, reply_ttl: float) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the reply lists.
            reply_ttl: Seconds an unread reply stays available.
        """
        if isinstance(reply_ttl, bool) or not isinstance(reply_ttl, int | float) or reply_ttl <= 0:
            raise ConfigError(f"ReplyChannel reply_ttl must be seconds > 0, got {reply_ttl!r}")
        self._client = client
        self._keyspace = keyspace
        self._ttl_ms = max(1, math.ceil(reply_ttl * 1000))

    def push(self, session_key: str, message_id: str, reply: Mapping[str, Any]) -> None:
        """Deliver a message's reply (RPUSH + PEXPIRE in one MULTI/EXEC).

        Raises:
            InvalidMessage: ``reply`` is not plain msgpack-safe data.
        """
        try:
            data = pack(dict(reply))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not plain data: {exc}"
            ) from None
        key = self._keyspace.reply_list(session_key, message_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, data)
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()

    def wait(self, session_key: str, message_id: str, timeout: float) -> dict[str, Any] | None:
        """Pop a message's reply, waiting up to ``timeout`` seconds.

        Returns:
            The reply dict, or ``None`` if none arrived in time.

        Raises:
            InvalidMessage: the stored reply is not a msgpack map.
        """
        key = self._keyspace.reply_list(session_key, message_id)
        raw: Any
        if timeout <= 0:
            raw = self._client.lpop(key)
        else:
            popped: Any = _blocking_read(
                self._client, lambda seconds: self._client.blpop([key], seconds), timeout
            )
            raw = None if popped is None else popped[1]
        if raw is None:
            return None
        try:
            value = unpack(raw)
        except ValueError as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not msgpack: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise InvalidMessage(
                f"reply for message {message_id!r} must be a map, got {type(value).__name__}"
            )
        return value


# -- helpers ---------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _running_since(status: bytes | None, started_at: bytes | None, since: datetime) -> bool:
    """Whether a job hash says STARTED at or after ``since`` (a live claim, not an abandoned one)."""
    if status is None or _text(status) != JobStatus.STARTED.value or not started_at:
        return False
    try:
        return utcparse(_text(started_at)) >= since
    except ValueError:
        return False


def _decode_turn(compressed: bytes) -> TurnJob:
    """Decode an rq job's ``data`` field into a :class:`TurnJob` (msgpack only)."""
    try:
        data = zlib.decompress(compressed)
    except zlib.error:
        data = compressed
    try:
        func_name, _instance, _args, kwargs = MsgpackSerializer.loads(data)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"job data is not an rq msgpack payload ({exc})") from None
    if func_name != TURN_FUNCTION:
        raise InvalidMessage(f"job function is {func_name!r}, expected {TURN_FUNCTION!r}")
    return TurnJob.from_dict(kwargs)


def _socket_slice(client: redis.Redis) -> float | None:
    """Longest block that returns before the client's socket read times out."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return None
    timeout = float(timeout)
    return max(timeout - _SOCKET_MARGIN, timeout / 2)


def _blocking_read(
    client: redis.Redis, call: Callable[[float], T | None], timeout: float
) -> T | None:
    """Run a blocking command ``call(seconds)`` until it returns a value or ``timeout`` passes."""
    cap = _socket_slice(client)
    deadline = time.monotonic() + timeout
    first = True
    while True:
        remaining = deadline - time.monotonic()
        if remaining < _MIN_BLOCK and not first:
            return None
        first = False
        seconds = max(_MIN_BLOCK, remaining if cap is None else min(remaining, cap))
        started = time.monotonic()
        result = call(seconds)
        if result is not None:
            return result
        if time.monotonic() - started < seconds / 2:
            # The server answered at once instead of blocking (fakeredis'
            # BLMOVE does): wait a little rather than spin.
            time.sleep(max(0.0, min(_POLL_INTERVAL, deadline - time.monotonic())))
