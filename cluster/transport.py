"""Turn jobs between coordinator and workers: rq's queues, job hashes and registries, our executor.

The coordinator routes each accepted message and puts it on its owner's rq
queue as an rq job in one script (:meth:`TurnQueue.submit`: the owner must be
live and active at that instant, and the message gets the next sequence of
its session's pending set); the worker's claim loop moves job ids from that
queue to its in-flight list (:meth:`TurnQueue.claim_many`), runs the turns on
its own thread pool (``worker.executor``), and records each outcome in rq's
registries (:meth:`TurnQueue.complete`). A job whose session moved is handed
on (:meth:`TurnQueue.hand_off`); a dead or draining worker's jobs move to
their sessions' owners (:meth:`TurnQueue.requeue_inflight`); garbage entries
go to a dead-letter list. Replies travel back on a per-message list
(:class:`ReplyChannel`); a committed turn's reply is delivered by its commit.

Why not rq's workers: the default worker forks per job, losing the
process's agent cache, and ``SimpleWorker`` runs one job at a time with ~20
round trips each, while a worker process needs 32+ I/O-bound turns in flight
sharing one cache. So this module speaks rq's data format (the job hash,
``rq:queue:*``, the started/finished/failed registries, result streams, all
through rq's own classes and always with :class:`MsgpackSerializer`, never
pickle), so rq's tooling can inspect the queues, but runs the jobs itself.
The job "function" is the tag :data:`~cluster.jobs.TURN_JOB_TAG` (no callable):
an rq worker given such a job would fail it, never run it.

Round trips (measured by ``tests/integration/cluster/test_transport.py``):

* enqueue: 1 (``turn_enqueue.lua``: route, duplicate check, job hash, queue
  push, pending sequence). The first on each queue also registers it in
  ``rq:queues``; a stale routing guess costs one more;
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

import json
import logging
import math
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat

from cluster.blocking import blocking_read
from cluster.errors import ConfigError, InvalidMessage, NoLiveWorkers
from cluster.jobs import (
    STRATEGIES,
    TURN_JOB_TAG,
    ClaimedTurn,
    ClaimRef,
    Enqueued,
    JobFinish,
    TurnJob,
    decode_turn,
    job_id_for,
    job_id_or_none,
    text,
)
from cluster.keys import Keyspace
from cluster.replies import ReplyChannel
from cluster.requeue import WAKE_TOKEN, QueueKeys, Requeuer
from cluster.scripts import ScriptSet
from cluster.serialization import MsgpackSerializer

# TurnQueue is this module's own; the rest is re-exported for callers of the queue.
__all__ = [
    "STRATEGIES",
    "ClaimedTurn",
    "Enqueued",
    "ReplyChannel",
    "TurnJob",
    "TurnQueue",
    "job_id_for",
]

log = logging.getLogger("cluster.transport")

# Dead-letter entries kept (oldest dropped first).
_DEAD_LETTER_CAP = 10_000
# Seconds added to the job timeout for the started-registry score, so rq's
# registry cleanup never declares a turn abandoned while it may still run.
_STARTED_MARGIN = 60


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
        self._queue_keys: dict[str, QueueKeys] = {}
        self._scripts = ScriptSet(client)
        self._requeuer = Requeuer(
            client,
            keyspace,
            worker_keys=self._worker_keys,
            dead_letter=self._dead_letter,
            result_ttl=self._result_ttl,
        )

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

    def _keys(self, queue_name: str) -> QueueKeys:
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

    def _worker_keys(self, worker_id: str) -> QueueKeys:
        return self._keys(self._keyspace.worker_queue(worker_id))

    # -- enqueue -----------------------------------------------------------------

    def job_id(self, job: TurnJob) -> str:
        """The rq job id of a turn in this namespace (see :func:`job_id_for`)."""
        return job_id_for(self._keyspace.namespace, job.session_key, job.message_id)

    def submit(
        self,
        job: TurnJob,
        *,
        target: str,
        proposal: str,
        reply_ttl: float,
        rebalance_idle: float = 0.0,
        strategy: str = "enqueue",
    ) -> Enqueued:
        """Route a message's session and queue its turn, in one atomic script.

        The job lands on ``target``'s queue only if, at that instant, ``target``
        is the session's owner and live and active (not draining): the session
        keeps an eligible owner, a session without one goes to ``proposal``,
        and an eligible owner that is not ``proposal`` gives the session up to
        it only when the session has been idle for ``rebalance_idle`` seconds
        with nothing pending or running. Otherwise nothing is written and the
        result names the worker to retry with. Each queued message gets the
        next sequence number of its session; turns run in that order.

        A message id already answered is answered again from the stored reply
        (nothing queued); one whose job is still pending on a live worker keeps
        its place; one whose job sits on a dead worker is reported ``stranded``.

        Args:
            job: The turn.
            target: The worker whose queue the caller expects (its owner hint
                or ``proposal``).
            proposal: The consistent-hash choice among the active workers.
            reply_ttl: Seconds a re-pushed stored reply waits for its caller.
            rebalance_idle: Seconds a session must be idle before it moves to
                ``proposal`` from an eligible owner; 0 never moves it.
            strategy: What to do when a turn of the session is running
                (double texting): ``enqueue``, ``interrupt``, ``reject``,
                ``rollback`` or ``stop`` (see ``turn_enqueue.lua``).
        """
        if strategy not in STRATEGIES:
            raise InvalidMessage(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        target = self._keyspace.check_worker_id(target)
        queue = self._queue(target)
        keys = self._worker_keys(target)
        session = self._keyspace.session(job.session_key)
        job_id = self.job_id(job)
        rq_job = queue.create_job(
            TURN_JOB_TAG,
            kwargs=job.as_dict(),
            job_id=job_id,
            timeout=self._job_timeout,
            result_ttl=self._result_ttl,
            failure_ttl=self._result_ttl,
            description=f"turn {job.message_id}",
        )
        rq_job.enqueued_at = now()
        fields: list[Any] = []
        for name, value in rq_job.to_dict().items():
            if name == "status" or value is None:
                continue
            fields += [name, value.value if isinstance(value, JobStatus) else value]
        k = self._keyspace
        status, worker, epoch, seq = self._scripts(
            "turn_enqueue",
            [
                session.owner,
                session.pending,
                session.meta,
                session.lease,
                session.replies,
                k.reply_list(job.session_key, job.message_id),
                k.members_live(),
                k.members_state(),
                Job.key_for(job_id),
                keys.queue,
                k.owned_sessions(target),
            ],
            [
                job.session_key,
                target,
                proposal,
                max(0, math.ceil(rebalance_idle * 1000)),
                job.message_id,
                job_id,
                max(1, math.ceil(reply_ttl * 1000)),
                strategy,
                k.events_channel(),
                *fields,
            ],
        )
        result = Enqueued(text(status), text(worker), int(epoch), int(seq))
        if result.status == "queued":
            self._register_queue(queue)
        return result

    def enqueue(self, worker_id: str, job: TurnJob) -> bool:
        """Queue a turn on ``worker_id``, which must be (or become) the session's owner.

        A convenience over :meth:`submit` with ``worker_id`` as both target and
        proposal, for callers that already routed the session.

        Returns:
            ``True`` if queued, ``False`` if the message was pending already
            (or answered again from its stored reply).

        Raises:
            NoLiveWorkers: ``worker_id`` is not the session's eligible owner
                (not live, draining, or another worker owns the session), or the
                message's earlier job is stranded on a dead worker.
        """
        result = self.submit(job, target=worker_id, proposal=worker_id, reply_ttl=self._result_ttl)
        if result.status in ("queued", "pending", "answered"):
            return result.status == "queued"
        raise NoLiveWorkers(
            f"turn {job.message_id!r} of session {job.session_key!r} was not queued on "
            f"{worker_id!r}: {result.status} ({result.worker_id or 'no eligible worker'}); "
            "route it with the coordinator, which follows the session's owner"
        )

    def _register_queue(self, queue: Queue) -> None:
        # rq's tooling lists queues from "rq:queues"; once per queue per process.
        with self._lock:
            if queue.name in self._registered:
                return
            self._registered.add(queue.name)
        self._client.sadd(Queue.redis_queues_keys, queue.key)

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
        rq's started registry. Garbage ids and jobs whose hash is gone or that
        cannot be decoded go to the dead-letter list; an id twice in one claim
        is claimed once. A job is never dropped because it looks started
        elsewhere: the turn start decides (answered, owner elsewhere, or run).

        Args:
            worker_id: The claiming worker.
            limit: Most turns to claim (the executor's free capacity).
            block: Seconds to wait when the queue is empty; 0 does not wait.
                A blocking claim is one round trip: the blocking pop and the
                claim script in one pipeline (an idle worker sends one per
                ``block`` seconds and nothing else).

        Returns:
            The claimed turns, possibly fewer than ``limit`` or none.
        """
        if limit < 1:
            return []
        keys = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        if block <= 0:
            rows = self._claim(keys, inflight, worker_id, limit, moved=())
        else:
            popped = blocking_read(
                self._client,
                lambda seconds: self._pop_and_claim(keys, inflight, worker_id, limit, seconds),
                block,
            )
            if popped is None:
                return []
            moved, rows = popped
            if moved is not None and moved != WAKE_TOKEN and moved not in rows[::5]:
                # The pop moved an id the script could not take (no job hash, say).
                rows += self._claim(keys, inflight, worker_id, 0, moved=(moved,))
        return self._claimed(worker_id, keys, rows) if rows else []

    def _pop_and_claim(
        self, keys: QueueKeys, inflight: str, worker_id: str, limit: int, seconds: float
    ) -> tuple[Any, list[Any]] | None:
        """A blocking pop and the claim script behind it, one round trip (None: nothing came)."""
        moved, rows = self._scripts.call_after_move(
            "turn_claim",
            [keys.queue, inflight, keys.started],
            self._claim_args(worker_id, limit - 1, tail=True, moved=()),
            (keys.queue, inflight, seconds),
        )
        if moved is None and not rows:
            return None
        return moved, list(rows)

    def _claim(
        self, keys: QueueKeys, inflight: str, worker_id: str, limit: int, *, moved: tuple[Any, ...]
    ) -> list[Any]:
        """Run ``turn_claim.lua``: five entries per claimed id (id, execution, data, seq, depth)."""
        return list(
            self._scripts(
                "turn_claim",
                [keys.queue, inflight, keys.started],
                self._claim_args(worker_id, limit, tail=False, moved=moved),
            )
        )

    def _claim_args(
        self, worker_id: str, limit: int, *, tail: bool, moved: tuple[Any, ...]
    ) -> list[Any]:
        stamp = utcformat(now())
        score = current_timestamp() + self._job_timeout + _STARTED_MARGIN
        return [limit, Job.redis_job_namespace_prefix, stamp, score, worker_id,
                uuid.uuid4().hex, WAKE_TOKEN, "1" if tail else "0", *moved]  # fmt: skip

    def _claimed(self, worker_id: str, keys: QueueKeys, rows: list[Any]) -> list[ClaimedTurn]:
        """The claimed turns of a claim script's reply; the rest leave the in-flight list."""
        claimed_at = time.time()
        claimed: list[ClaimedTurn] = []
        undo: list[tuple[Any, str | None]] = []  # (raw id, started member or None) to take back
        dead: list[tuple[Any, str]] = []
        seen: set[str] = set()
        for index in range(0, len(rows), 5):
            raw, execution, data, seq, depth = rows[index : index + 5]
            execution_id = text(execution)
            job_id = job_id_or_none(raw)
            if job_id is None:
                undo.append((raw, None))
                dead.append((raw, "not a job id (not UTF-8 or not rq's [A-Za-z0-9_-])"))
                continue
            if data is None:
                undo.append((job_id, None))
                dead.append((job_id, "no job hash (expired or deleted)"))
                continue
            if job_id in seen:
                # The same id twice in one claim: run it once. A copy claimed by
                # another claim is run too: the turn start finds it answered or
                # hands it to the session's owner, so nothing runs twice and a
                # job is never dropped on a guess that it runs elsewhere.
                undo.append((job_id, f"{job_id}:{execution_id}"))
                continue
            seen.add(job_id)
            try:
                turn = decode_turn(data)
                if depth is not None and int(depth) > 0:
                    turn = TurnJob.from_dict(
                        {**turn.as_dict(), "attrs": {**turn.attrs, "interrupt_depth": int(depth)}}
                    )
            except (InvalidMessage, ValueError) as exc:
                dead.append((job_id, f"not a turn job: {exc}"))
                self._finish(worker_id, keys, job_id, execution_id, ok=False, error=str(exc))
                continue
            claim = ClaimRef(worker_id, job_id, keys.name, execution_id)
            claimed.append(
                ClaimedTurn(replace(turn, claim=claim), claimed_at, seq=int(seq or 0))
            )
        if undo or dead:
            inflight = self._keyspace.inflight(worker_id)
            with self._client.pipeline(transaction=False) as pipe:
                for raw, member in undo:
                    pipe.lrem(inflight, 1, raw)
                    if member is not None:
                        pipe.zrem(keys.started, member)
                for raw, reason in dead:
                    self._dead_letter(pipe, raw, reason, worker_id)
                pipe.execute()
        return claimed

    def _dead_letter(self, pipe: Any, job_id: Any, reason: str, worker_id: str) -> None:
        shown = job_id if isinstance(job_id, str) else repr(job_id)
        log.error("dead-lettered %s from worker %s: %s", shown, worker_id, reason)
        entry = json.dumps(
            {"job": shown, "reason": reason, "worker": worker_id, "at": time.time()},
            separators=(",", ":"),
        )
        pipe.rpush(self._keyspace.dead_letter(), entry)
        pipe.ltrim(self._keyspace.dead_letter(), -_DEAD_LETTER_CAP, -1)

    def wake_claimer(self, worker_id: str) -> None:
        """End a worker's blocking claim at once (its claim discards the token)."""
        self._client.lpush(self._worker_keys(worker_id).queue, WAKE_TOKEN)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-letter entries (job, reason, worker, at), oldest first."""
        raw: list[Any] = list(self._client.lrange(self._keyspace.dead_letter(), -limit, -1))
        return [json.loads(text(entry)) for entry in raw]

    # -- complete --------------------------------------------------------------

    def complete(self, claimed: ClaimedTurn, *, ok: bool, error: str | None = None) -> None:
        """Record a claimed turn's outcome: FINISHED or FAILED, off the in-flight list.

        One MULTI/EXEC pipeline: removes the job id from the in-flight list, the
        session's pending set and its claim from the started registry, sets the job status (and, on
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
            claimed.worker_id,
            keys,
            claimed.job_id,
            claimed.execution_id,
            ok=ok,
            error=error,
            session_key=claimed.job.session_key,
        )

    def finish_for(self, claim: ClaimRef) -> JobFinish:
        """What a turn's commit needs to complete ``claim``'s job as finished in the same script.

        The commit then does what :meth:`complete` with ``ok=True`` does (and
        releases the lease); see ``session_commit.lua``.
        """
        keys = self._keys(claim.queue_name)
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
                self._keyspace.inflight(claim.worker_id),
                keys.started,
                Job.key_for(claim.job_id),
                keys.finished,
                Result.get_key(claim.job_id),  # type: ignore[no-untyped-call]
            ),
            args=(
                claim.job_id,
                f"{claim.job_id}:{claim.execution_id}",
                utcformat(ended),
                self._result_ttl,
                current_timestamp() + self._result_ttl,
                *fields,
            ),
        )

    def _finish(
        self,
        worker_id: str,
        keys: QueueKeys,
        job_id: str,
        execution_id: str,
        *,
        ok: bool,
        error: str | None,
        session_key: str | None = None,
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
            if session_key is not None:
                pipe.zrem(self._keyspace.session(session_key).pending, job_id)
            pipe.execute()

    def hand_off(self, claimed: ClaimedTurn, to_worker: str) -> bool:
        """Move a claimed turn from this worker's in-flight list to ``to_worker``'s queue front.

        For a job whose session another worker owns now. One script; a job no
        longer on the in-flight list (recovery or a drain moved it already) is
        left where it is.

        Returns:
            Whether this call moved the job.
        """
        target = self._worker_keys(to_worker)
        source = self._keys(claimed.queue_name)
        return bool(
            self._scripts(
                "job_handoff",
                [
                    self._keyspace.inflight(claimed.worker_id),
                    target.queue,
                    Job.key_for(claimed.job_id),
                    source.started,
                ],
                [
                    claimed.job_id,
                    to_worker,
                    target.name,
                    f"{claimed.job_id}:{claimed.execution_id}",
                ],
            )
        )

    def clear_stale_pending(self, session_key: str, job_id: str) -> bool:
        """Drop a pending entry of a session whose job can never run (hash gone, or ended).

        Called when a turn waits behind ``job_id``: a job that ended without
        leaving the pending set, or whose hash vanished, would otherwise hold
        the session's later turns back for ever.

        Returns:
            Whether the entry was stale and removed.
        """
        status = self._client.hget(Job.key_for(job_id), "status")
        if status is not None and text(status) in (JobStatus.QUEUED.value, JobStatus.STARTED.value):
            return False
        log.warning("session %s: pending job %s has ended or vanished; dropped", session_key, job_id)
        self._client.zrem(self._keyspace.session(session_key).pending, job_id)
        return True

    # -- recovery ----------------------------------------------------------------

    def requeue_inflight(
        self,
        worker_id: str,
        *,
        to_queue_of: Callable[[TurnJob], str] | None = None,
        only: Collection[str] | None = None,
    ) -> int:
        """Put a dead or draining worker's not-running turns on their owners' queues.

        See :meth:`cluster.requeue.Requeuer.requeue`.
        """
        return self._requeuer.requeue(worker_id, to_queue_of=to_queue_of, only=only)

    # -- counts ------------------------------------------------------------------

    def pending(self, worker_id: str) -> int:
        """Number of job ids waiting on a worker's queue."""
        return int(self._client.llen(self._worker_keys(worker_id).queue))

    def inflight_ids(self, worker_id: str) -> list[str]:
        """The job ids on a worker's in-flight list (garbage entries left out)."""
        raw: list[Any] = list(self._client.lrange(self._keyspace.inflight(worker_id), 0, -1))
        return [job_id for job_id in map(job_id_or_none, raw) if job_id is not None]

    def inflight_count(self, worker_id: str) -> int:
        """Number of job ids a worker has claimed and not completed."""
        return int(self._client.llen(self._keyspace.inflight(worker_id)))


