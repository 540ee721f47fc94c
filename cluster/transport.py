"""Turn jobs between coordinator and workers: rq's queues, job hashes and registries, our executor.

The coordinator routes each accepted message and puts it on its owner's rq
queue as an rq job in one script (:meth:`TurnQueue.submit`: the owner must be
live and active at that instant, and the message gets the next sequence of
its session's pending set); the worker's claim loop moves job ids from that
queue to its in-flight list (:meth:`TurnQueue.claim_many`), runs the turns on
its own thread pool (``worker.executor``), and records each outcome in rq's
registries (:meth:`TurnQueue.complete`). The claim itself lives in
:mod:`cluster.claims`, rq's format in :mod:`cluster.rq_format`, the moves of
a dead or draining worker's jobs in :mod:`cluster.requeue` and the
dead-letter list in :mod:`cluster.dead_letters`; this module routes,
enqueues, completes and hands off. A job whose session moved is handed
on (:meth:`TurnQueue.hand_off`); a dead or draining worker's jobs move to
their sessions' owners (:meth:`TurnQueue.requeue_inflight`); garbage entries
go to a dead-letter list. Replies travel back on a per-message list
(:class:`ReplyChannel`); a committed turn's reply is delivered by its commit.

Why not rq's workers: the default worker forks per job, losing the
process's agent cache, and ``SimpleWorker`` runs one job at a time with ~20
round trips each, while a worker process needs 32+ I/O-bound turns in flight
sharing one cache. So the queue speaks rq's data format (the job hash,
``rq:queue:*``, the started/finished/failed registries, result streams, all
through rq's own classes and never pickle: :mod:`cluster.rq_format`), so
rq's tooling can inspect the queues, but runs the jobs itself.

Round trips (measured by ``tests/integration/cluster/test_transport.py``):

* enqueue: 1 (``turn_enqueue.lua``: route, duplicate check, job hash, queue
  push, pending sequence). The first on each queue also registers it in
  ``rq:queues``; a stale routing guess costs one more;
* claim: 1 (``turn_claim.lua`` moves up to ``limit`` ids queue -> in-flight,
  reads the jobs, marks them STARTED and adds them to the started registry;
  a waiting claim sends the blocking ``BLMOVE`` in the same pipeline);
* complete: 1 (one MULTI/EXEC pipeline).

Limits: rq's keys carry no hash tag, so the queue, the in-flight list and the
job hashes live on different Redis Cluster slots; this module targets a
single Redis (or a primary with replicas), like rq itself.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Collection
from typing import Any

import redis
from rq.job import JobStatus

from cluster.claims import Claimer
from cluster.dead_letters import DeadLetters
from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import ConfigError, InvalidMessage
from cluster.jobs import (
    STRATEGIES,
    ClaimedTurn,
    ClaimRef,
    Enqueued,
    JobFinish,
    TurnJob,
    job_id_for,
    job_id_or_none,
)
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.replies import ReplyChannel
from cluster.requeue import Requeuer
from cluster.rq_format import QueueKeys, RqFormat
from cluster.scripts import ScriptSet

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


class TurnQueue:
    """The worker queues of one namespace, in rq's format, run by our executor.

    Thread-safe: share one per process. Blocking claims are cut into slices
    shorter than the client's socket timeout, so any client works; a client
    from :func:`cluster.connection.blocking_client` just needs fewer slices.
    """

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        job_timeout: float,
        result_ttl: float,
        durability: Durability = NO_DURABILITY,
    ) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the worker queues and in-flight lists.
            job_timeout: Seconds a turn may run (rq's job timeout; also how long
                a claim stays in rq's started registry before rq would call it abandoned).
            result_ttl: Seconds a finished or failed job (hash, result, registry
                entry) is kept.
            durability: With ``replica``, an enqueue and a claim count only once
                a replica has them (:class:`~cluster.errors.NotReplicated` otherwise).
        """
        for name, value in (("job_timeout", job_timeout), ("result_ttl", result_ttl)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"TurnQueue {name} must be seconds > 0, got {value!r}")
        self._client = client
        self._keyspace = keyspace
        self._rq = RqFormat(
            client,
            keyspace,
            job_timeout=max(1, math.ceil(job_timeout)),
            result_ttl=max(1, math.ceil(result_ttl)),
        )
        self._scripts = ScriptSet(client, durability=durability)
        self._dead_letters = DeadLetters(client, keyspace)
        self._claimer = Claimer(
            client,
            keyspace,
            rq_format=self._rq,
            scripts=self._scripts,
            dead_letters=self._dead_letters,
            end_job=self._end_job,
        )
        self._requeuer = Requeuer(
            client,
            keyspace,
            worker_keys=self._rq.worker_keys,
            dead_letter=self._dead_letters.add,
            result_ttl=self._rq.result_ttl,
        )

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
                ``rollback``, ``stop``, ``steer`` (fold it into the running
                turn at its next safe point) or ``collect`` (join it with the
                messages that arrive with it into one next turn); see
                ``turn_enqueue.lua``.
        """
        if strategy not in STRATEGIES:
            raise InvalidMessage(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        target = self._keyspace.check_worker_id(target)
        keys = self._rq.worker_keys(target)
        session = self._keyspace.session(job.session_key)
        job_id = self.job_id(job)
        fields = self._rq.job_fields(target, job, job_id)
        k = self._keyspace
        status, worker, epoch, seq, primary = self._scripts(
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
                self._rq.job_key(job_id),
                keys.queue,
                k.owned_sessions(target),
                k.session_folds(job.session_key),
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
        result = Enqueued(text(status), text(worker), int(epoch), int(seq), text(primary))
        if result.status == "queued":
            self._rq.register_queue(target)
        elif result.status == "pending" and result.worker_id:
            if self._rescue(job, job_id, result.worker_id):
                result = dataclasses.replace(result, status="queued")  # its job is queued again
        return result

    def _rescue(self, job: TurnJob, job_id: str, worker_id: str) -> bool:
        """A message found pending: make sure one of its worker's lists holds its job.

        See ``job_rescue.lua``: after a Redis failover a job may be pending with
        no list holding it, and then no worker would ever run it.

        Returns:
            Whether the job was put back on its worker's queue.
        """
        if not self._put_back(worker_id, job.session_key, job_id):
            return False
        log.warning(
            "message %s of session %s was pending on %s but in none of its lists "
            "(a Redis failover split them): put back on its queue",
            job.message_id,
            job.session_key,
            worker_id,
        )
        return True

    def _put_back(self, worker_id: str, session_key: str, job_id: str) -> bool:
        k = self._keyspace
        keys = [
            k.inflight(worker_id),
            self._rq.worker_keys(worker_id).queue,
            self._rq.job_key(job_id),
            k.session(session_key).pending,
        ]
        return bool(self._scripts("job_rescue", keys, [job_id, worker_id]))

    def rescue_unlisted(self, worker_id: str, running: Collection[str]) -> int:
        """Put back on its queue every pending job of ``worker_id`` that no list holds.

        For a worker that saw a Redis failover: the promoted replica may hold a
        job of one of its sessions as queued or started with neither its queue
        nor its in-flight list naming it. Jobs in ``running`` (this process
        runs or holds them) are left alone.

        Returns:
            How many jobs were put back.
        """
        k = self._keyspace
        sessions = [text(s) for s in self._client.smembers(k.owned_sessions(worker_id))]
        if not sessions:
            return 0
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(k.inflight(worker_id), 0, -1)
        pipe.lrange(self._rq.worker_keys(worker_id).queue, 0, -1)
        for session_key in sessions:
            pipe.zrange(k.session(session_key).pending, 0, -1)
        inflight, queued, *pending = pipe.execute()
        # Listed ids are skipped here, so the script (which checks again, atomically) runs
        # only for the few a failover left unlisted, not once per queued job.
        skip = set(running) | {text(i) for i in inflight} | {text(i) for i in queued}
        moved = 0
        for session_key, ids in zip(sessions, pending, strict=True):
            for job_id in map(text, ids):
                if job_id not in skip and self._put_back(worker_id, session_key, job_id):
                    moved += 1
        return moved

    # -- claim ---------------------------------------------------------------

    def claim_many(self, worker_id: str, limit: int, *, block: float) -> list[ClaimedTurn]:
        """Claim up to ``limit`` turns of a worker's queue.

        See :meth:`cluster.claims.Claimer.claim_many`.
        """
        return self._claimer.claim_many(worker_id, limit, block=block)

    def wake_claimer(self, worker_id: str) -> None:
        """End a worker's blocking claim at once (its claim discards the token)."""
        self._claimer.wake(worker_id)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-letter entries (job, reason, worker, at), oldest first."""
        return self._dead_letters.newest(limit)

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
        keys = self._rq.keys(claimed.queue_name)
        self._end_job(
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
        return self._rq.finish_for(claim, self._keyspace.inflight(claim.worker_id))

    def _end_job(
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
        with self._client.pipeline(transaction=True) as pipe:
            pipe.lrem(self._keyspace.inflight(worker_id), 1, job_id)
            self._rq.end_job(
                pipe,
                keys,
                worker_id=worker_id,
                job_id=job_id,
                execution_id=execution_id,
                ok=ok,
                error=error,
            )
            if session_key is not None:
                pipe.zrem(self._keyspace.session(session_key).pending, job_id)
            pipe.execute()

    def release(self, claimed: ClaimedTurn) -> None:
        """Let go of a claim whose job is not pending any more, and touch nothing else.

        For a turn that found nothing to run because its job left the
        session's pending set (answered before, or lost by a Redis failover
        while this worker held it in memory). The job hash, the pending set
        and the job's place in rq's registries are left alone: a caller may
        have resubmitted the same message id meanwhile, re-creating the job,
        and :meth:`complete` would end that fresh job unrun and drop it from
        the pending set. Only this claim's in-flight entry and its
        started-registry entry go.
        """
        keys = self._rq.keys(claimed.queue_name)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.lrem(self._keyspace.inflight(claimed.worker_id), 1, claimed.job_id)
            pipe.zrem(keys.started, f"{claimed.job_id}:{claimed.execution_id}")
            pipe.execute()

    def hand_off(self, claimed: ClaimedTurn, to_worker: str) -> bool:
        """Move a claimed turn from this worker's in-flight list to ``to_worker``'s queue front.

        For a job whose session another worker owns now. One script; a job no
        longer on the in-flight list (recovery or a drain moved it already) is
        left where it is.

        Returns:
            Whether this call moved the job.
        """
        target = self._rq.worker_keys(to_worker)
        source = self._rq.keys(claimed.queue_name)
        return bool(
            self._scripts(
                "job_handoff",
                [
                    self._keyspace.inflight(claimed.worker_id),
                    target.queue,
                    self._rq.job_key(claimed.job_id),
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
        status = self._rq.job_status(job_id)
        if status in (JobStatus.QUEUED.value, JobStatus.STARTED.value):
            return False
        log.warning(
            "session %s: pending job %s has ended or vanished; dropped", session_key, job_id
        )
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
        return int(self._client.llen(self._rq.worker_keys(worker_id).queue))

    def inflight_ids(self, worker_id: str) -> list[str]:
        """The job ids on a worker's in-flight list (garbage entries left out)."""
        raw: list[Any] = list(self._client.lrange(self._keyspace.inflight(worker_id), 0, -1))
        return [job_id for job_id in map(job_id_or_none, raw) if job_id is not None]

    def inflight_count(self, worker_id: str) -> int:
        """Number of job ids a worker has claimed and not completed."""
        return int(self._client.llen(self._keyspace.inflight(worker_id)))
