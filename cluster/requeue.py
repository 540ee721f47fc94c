"""Moving a worker's turn jobs to other queues: a dead worker's, a draining one's, orphans.

:class:`Requeuer` is the part of :class:`cluster.transport.TurnQueue` that
takes jobs off one worker's queue and in-flight list and puts them at the
front of their new owners' queues, in one ``WATCH``-guarded transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.utils import current_timestamp

from cluster.errors import AgentClusterError, InvalidMessage
from cluster.jobs import TurnJob, decode_turn, job_id_or_none
from cluster.keys import Keyspace
from cluster.rq_format import QueueKeys

__all__ = ["Requeuer", "WAKE_TOKEN"]

# Pushed onto a worker's own queue to end its blocking claim at once (a drain);
# claims and requeues discard it. Not a job id: rq ids never contain "~".
WAKE_TOKEN = b"~wake"
_WATCH_ATTEMPTS = 50


class DeadLetter(Protocol):
    """Records an entry no worker can run (on a pipeline, with the reason)."""

    def __call__(self, pipe: Any, job_id: Any, reason: str, worker_id: str) -> None: ...


@dataclass
class _RequeuePlan:
    groups: dict[str, list[str]] = field(default_factory=dict)  # target worker -> job ids
    broken: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)
    missing: list[str] = field(default_factory=list)  # job ids without a job hash
    moved: int = 0


class Requeuer:
    """Moves turn jobs between worker queues (see :meth:`requeue`)."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        worker_keys: Callable[[str], QueueKeys],
        dead_letter: DeadLetter,
        result_ttl: int,
    ) -> None:
        """Bind to the queue's client, key naming and dead-letter list."""
        self._client = client
        self._keyspace = keyspace
        self._worker_keys = worker_keys
        self._dead_letter = dead_letter
        self._result_ttl = result_ttl

    def requeue(
        self,
        worker_id: str,
        *,
        to_queue_of: Callable[[TurnJob], str] | None = None,
        only: Collection[str] | None = None,
    ) -> int:
        """Put a dead or draining worker's claimed (and queued) turns on their owners' queues.

        Only for turns that are not running: a dead worker's, or those a
        draining worker has not started (``only``). A turn that is still
        running would run twice (the session store answers a message once and
        fencing stops the loser, but the work is wasted).

        The moved ids go to the *front* of their target queue, in-flight ones
        first, each group in its original order: they are older than anything
        queued there since. Turn order within a session is enforced at turn
        start anyway (the session's pending sequence), so a move can never
        reorder a conversation. The move is one transaction guarded by
        ``WATCH`` on the worker's lists; each moved job records its new worker.
        Garbage entries (not a job id, no job hash, not a turn job) go to the
        dead-letter list with the reason.

        Args:
            worker_id: The dead or draining worker.
            to_queue_of: Names the worker whose queue should get each job (the
                session's new owner). ``None`` puts the in-flight jobs back on
                the same worker's queue and leaves its queued jobs where they are.
            only: In-flight job ids to move (the rest stay); ``None`` moves all.

        Returns:
            How many jobs moved: every in-flight job put back on a queue plus
            every queued job moved to another worker's queue.
        """
        source = self._worker_keys(worker_id)
        inflight = self._keyspace.inflight(worker_id)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    pipe.watch(inflight, source.queue)  # type: ignore[no-untyped-call]
                    raw_running = list(dict.fromkeys(pipe.lrange(inflight, 0, -1)))
                    raw_waiting: list[Any] = []
                    if to_queue_of is not None:
                        raw_waiting = list(dict.fromkeys(pipe.lrange(source.queue, 0, -1)))
                    if only is not None:
                        wanted = set(only)
                        raw_running = [j for j in raw_running if job_id_or_none(j) in wanted]
                    running_raw_set = set(raw_running)
                    raw_waiting = [j for j in raw_waiting if j not in running_raw_set]
                    if not raw_running and not raw_waiting:
                        return 0
                    garbage = [
                        j
                        for j in raw_running + raw_waiting
                        if job_id_or_none(j) is None and j != WAKE_TOKEN
                    ]
                    running = [i for i in map(job_id_or_none, raw_running) if i is not None]
                    queued = [i for i in map(job_id_or_none, raw_waiting) if i is not None]
                    plan = self._plan_requeue(worker_id, running, queued, to_queue_of)
                    running_set = set(running)
                    members: list[Any] = list(self._client.zrange(source.started, 0, -1))
                    stale = [m for m in members if _started_job(m) in running_set]
                    pipe.multi()
                    for raw in raw_running:
                        pipe.lrem(inflight, 0, raw)  # type: ignore[arg-type]
                    for raw in garbage:
                        pipe.lrem(source.queue, 0, raw)
                        self._dead_letter(pipe, raw, "not a job id", worker_id)
                    pipe.lrem(source.queue, 0, WAKE_TOKEN)  # type: ignore[arg-type]
                    if to_queue_of is not None:
                        for job_id in queued:
                            pipe.lrem(source.queue, 0, job_id)  # re-pushed below in order
                    self._write_requeue(pipe, worker_id, source, plan)
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

    def _write_requeue(
        self, pipe: Any, worker_id: str, source: QueueKeys, plan: _RequeuePlan
    ) -> None:
        for target_worker, job_ids in plan.groups.items():
            target = self._worker_keys(target_worker)
            pipe.lpush(target.queue, *reversed(job_ids))
            for job_id in job_ids:
                pipe.hset(
                    Job.key_for(job_id),
                    mapping={
                        "origin": target.name,
                        "status": JobStatus.QUEUED.value,
                        "ac_worker": target_worker,
                    },
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
            self._dead_letter(pipe, job_id, reason, worker_id)
        for job_id in plan.missing:
            self._dead_letter(pipe, job_id, "no job hash (expired or deleted)", worker_id)

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
                plan.missing.append(job_id)
                continue
            target = worker_id
            if to_queue_of is not None:
                try:
                    turn = decode_turn(data)
                except InvalidMessage as exc:
                    plan.broken.append((job_id, f"not a turn job: {exc}"))
                    continue
                target = to_queue_of(turn)
            plan.groups.setdefault(target, []).append(job_id)
            if job_id in running_set or target != worker_id:
                plan.moved += 1
        return plan


def _started_job(member: Any) -> str | None:
    """The job id of a started-registry member ``job_id:execution_id``."""
    return job_id_or_none(member.split(b":", 1)[0] if isinstance(member, bytes) else member)
