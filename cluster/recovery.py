"""Handing a dead worker's turns on: detection, the recovery lock, requeue, broken leases.

A worker checks membership when another worker's heartbeat expires (its own
heartbeat says when; :meth:`Recovery.recover_dead`, one script call when
nobody is dead). When a worker's heartbeat has expired,
one survivor at a time (the recovery lock) prunes it and hands its work on:

* its queued and claimed turns move to each session's new owner (the current
  owner when it is still active, else the ring's choice among the active
  workers), to the front of that owner's queue, in order;
* the leases it held on those sessions are broken, so their next turns run
  within the detection time instead of after the lease TTL; its fencing
  tokens stay stale, so if it was only paused it can write nothing after;
* garbage entries go to the dead-letter list.

Turns whose history commit had happened are answered from the session store
(their reply was delivered with the commit) and never run again: the turn
start script sees the stored reply. The same code hands a draining worker's
not-started turns on (:meth:`Recovery.hand_over`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass

import redis

from cluster.event_log import ClusterEventLog
from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.membership import RedisMembership
from cluster.placement import Placement
from cluster.scripts import ScriptSet
from cluster.transport import TurnJob, TurnQueue

__all__ = ["Recovery", "RecoveryReport"]

log = logging.getLogger("cluster.recovery")


@dataclass(frozen=True)
class RecoveryReport:
    """What one hand-over did.

    Attributes:
        worker_id: The dead or draining worker.
        moved: Turn jobs moved to other workers' queues.
        sessions: Sessions whose turns moved.
        leases_broken: Leases of the worker that were broken.
    """

    worker_id: str
    moved: int
    sessions: int
    leases_broken: int


class Recovery:
    """Detects dead workers and hands their turns on (one recoverer at a time)."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        keyspace: Keyspace,
        membership: RedisMembership,
        placement: Placement,
        queue: TurnQueue,
        leases: RedisLeaseStore,
        lock_ttl: float = 30.0,
        on_recovered: Callable[[RecoveryReport], None] | None = None,
    ) -> None:
        """Bind the stores; nothing runs until a method is called.

        Args:
            client: Bytes client for the lock.
            keyspace: Names the lock.
            membership: To find and prune dead workers.
            placement: Chooses each moved session's new owner.
            queue: Moves the turn jobs.
            leases: Breaks the dead worker's leases.
            lock_ttl: Seconds the recovery lock is held at most (a recoverer
                that dies mid-way lets another take over after this).
            on_recovered: Called with each dead worker's report (metrics).
        """
        self._client = client
        self._keys = keyspace
        self._membership = membership
        self._placement = placement
        self._queue = queue
        self._leases = leases
        self._scripts = ScriptSet(client)
        self._lock_ms = max(1, math.ceil(lock_ttl * 1000))
        self._on_recovered = on_recovered
        self._event_log = ClusterEventLog(client, keyspace)

    def recover_dead(self) -> list[RecoveryReport]:
        """Hand on the turns of every worker whose heartbeat expired.

        Cheap when nobody is dead (one script call). Otherwise takes the
        recovery lock (another recoverer holding it means nothing to do now),
        prunes the dead and hands their turns on.

        Returns:
            One report per recovered worker (empty when none, or locked).
        """
        now, workers = self._membership.snapshot()
        if all(w.is_alive(now) for w in workers):
            return []
        return self._locked(self._recover_pruned)

    def recover_worker(self, worker_id: str) -> RecoveryReport | None:
        """Recover one worker whose job a caller found stranded (no-op if it is alive).

        Returns:
            The report, or ``None`` when the worker is alive or the lock is held.
        """
        if self._membership.is_alive(worker_id):
            return None

        def run() -> list[RecoveryReport]:
            self._membership.prune_dead()
            return [self.hand_over(worker_id)]

        reports = self._locked(run)
        return reports[0] if reports else None

    def hand_over(self, worker_id: str, *, only: Collection[str] | None = None) -> RecoveryReport:
        """Move a dead or draining worker's not-running turns to their sessions' owners.

        Args:
            worker_id: The worker (dead, or draining and not running ``only``'s turns).
            only: In-flight job ids to move; ``None`` moves every in-flight job
                (a dead worker). Its queued jobs always move.

        Returns:
            What moved.
        """
        sessions: set[str] = set()

        def owner_for(job: TurnJob) -> str:
            sessions.add(job.session_key)
            return self._placement.assign(job.session_key, exclude=(worker_id,))

        moved = self._queue.requeue_inflight(worker_id, to_queue_of=owner_for, only=only)
        broken = 0
        if only is None:
            for session_key in sorted(sessions):
                broken += self._leases.break_held_by(session_key, worker_id)
        report = RecoveryReport(worker_id, moved, len(sessions), broken)
        if moved or broken:
            log.warning(
                "handed on %d turn(s) of %d session(s) from worker %s; broke %d lease(s)",
                moved,
                len(sessions),
                worker_id,
                broken,
            )
        return report

    def _recover_pruned(self) -> list[RecoveryReport]:
        return [self.hand_over(worker_id) for worker_id in self._membership.prune_dead()]

    def _locked(self, action: Callable[[], list[RecoveryReport]]) -> list[RecoveryReport]:
        token = uuid.uuid4().hex
        lock = self._keys.recovery_lock()
        if not self._client.set(lock, token, nx=True, px=self._lock_ms):
            return []
        try:
            reports = action()
        finally:
            self._scripts("lock_release", [lock], [token])
        for report in reports:  # every report here is a dead worker's
            self._event_log.record(
                "worker_dead",
                f"{report.worker_id} died: {report.moved} turn(s) of {report.sessions} "
                f"session(s) handed on, {report.leases_broken} lease(s) broken",
                worker=report.worker_id,
                moved=report.moved,
                sessions=report.sessions,
                leases_broken=report.leases_broken,
            )
            if self._on_recovered is not None:
                self._on_recovered(report)
        return reports
