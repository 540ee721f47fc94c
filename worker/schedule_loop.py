"""Every worker's schedule loop: claim due firings through Redis, enqueue their turns.

No leader: each worker polls the due set every ``schedule_poll`` seconds
(Redis' clock decides what is due) and claims what it finds with
:meth:`cluster.schedules.ScheduleStore.claim`; only one claim of a firing
succeeds. A claimed firing is enqueued like any message (the same routing
and enqueue script as the coordinator's, :meth:`cluster.transport.TurnQueue.submit`)
under :func:`cluster.schedules.firing_message_id`, then marked done. Firings
whose claimer died before marking them done (their deadline,
``schedule_claim_ttl``, passed) are taken over and enqueued again under the
same message id, which the enqueue script answers as already pending or
answered, so the session gets the message once.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from cluster.cron import next_fire_after
from cluster.errors import AgentClusterError, NoLiveWorkers
from cluster.placement import Placement
from cluster.recovery import Recovery
from cluster.schedules import DueFiring, ScheduleStore, firing_message_id
from cluster.transport import TurnJob, TurnQueue

__all__ = ["ScheduleLoop"]

log = logging.getLogger("worker.schedules")

# Firings claimed per poll (the rest wait for the next one, a poll later at most).
_BATCH = 64
# Attempts to route one firing (reroutes, a stranded job's recovery) before leaving it
# to the next poll.
_ATTEMPTS = 8


class ScheduleLoop:
    """Claims and delivers due scheduled messages on a thread of its own."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        queue: TurnQueue,
        placement: Placement,
        recovery: Recovery,
        worker_id: str,
        poll: float,
        claim_ttl: float,
        reply_ttl: float,
        rebalance_idle: float,
    ) -> None:
        """Prepare (not start) the loop.

        Args:
            store: The schedules.
            queue: Where firings are enqueued (the normal enqueue script).
            placement: The ring's choice of owner for a session without one.
            recovery: Recovers a dead worker whose queue strands a firing's job.
            worker_id: This worker (recorded as the claimer).
            poll: Seconds between two looks at the due set.
            claim_ttl: Seconds a claimed firing may stay undelivered before
                another worker takes it over.
            reply_ttl: Seconds a re-pushed stored reply waits (enqueue argument).
            rebalance_idle: The cluster's rebalance setting (enqueue argument).
        """
        self._store = store
        self._queue = queue
        self._placement = placement
        self._recovery = recovery
        self.worker_id = worker_id
        self._poll = poll
        self._ttl_ms = max(1, int(claim_ttl * 1000))
        self._reply_ttl = reply_ttl
        self._rebalance_idle = rebalance_idle
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling on a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (a delivery in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._poll):
            try:
                self.poll_once()
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.warning("schedules: Redis failed (%s); retrying every %gs", exc, self._poll)
                failing = True
            except Exception:
                log.exception("schedules: poll failed; retrying in %gs", self._poll)

    def poll_once(self) -> int:
        """Take over overdue claims, claim due firings, deliver them; returns how many."""
        now, work = self._store.look()
        if not work:
            return 0
        taken: list[tuple[str, int]] = [
            (schedule_id, fire_ms)
            for schedule_id, fire_ms in self._store.overdue_claims(now, _BATCH)
            if self._store.reclaim(
                schedule_id, fire_ms, worker_id=self.worker_id, ttl_ms=self._ttl_ms
            )
        ]
        for firing in self._store.due(now, _BATCH):
            claimed = self._claim(firing, now)
            if claimed is not None:
                taken.append(claimed)
        delivered = 0
        for schedule_id, fire_ms in taken:
            if self._stop.is_set():
                break  # what is left is taken over once its claim expires
            delivered += self._deliver(schedule_id, fire_ms)
        return delivered

    def _claim(self, firing: DueFiring, now: int) -> tuple[str, int] | None:
        schedule = firing.schedule
        next_ms = next_fire_after(schedule.cron, firing.fire_ms, now)
        status = self._store.claim(
            firing, next_ms=next_ms, worker_id=self.worker_id, ttl_ms=self._ttl_ms
        )
        if status != "claimed":
            return None
        return schedule.schedule_id, firing.fire_ms

    def _deliver(self, schedule_id: str, fire_ms: int) -> int:
        """Enqueue one claimed firing; 1 when it is delivered (or was already)."""
        schedule = self._store.load(schedule_id)
        if schedule is None:  # cancelled after the claim: nothing to send
            self._store.drop_firing(schedule_id, fire_ms)
            return 0
        job = TurnJob(
            message_id=firing_message_id(schedule_id, fire_ms),
            session_key=schedule.session_key,
            text=schedule.text,
            submitted_at=time.time(),
        )
        try:
            status = self._enqueue(job)
        except AgentClusterError as exc:  # NoLiveWorkers, mostly
            log.warning(
                "schedules: firing %s of schedule %s (session %r) not enqueued yet: %s; "
                "retried once its claim expires",
                fire_ms,
                schedule_id,
                schedule.session_key,
                exc,
            )
            return 0
        self._store.done(schedule_id, fire_ms, schedule.session_key)
        log.info(
            "schedules: schedule %s fired into session %r (%s)",
            schedule_id,
            schedule.session_key,
            status,
        )
        return 1

    def _enqueue(self, job: TurnJob) -> str:
        last = ""
        for _ in range(_ATTEMPTS):
            proposal = self._placement.proposal(job.session_key)
            target = last or proposal
            result = self._queue.submit(
                job,
                target=target,
                proposal=proposal,
                reply_ttl=self._reply_ttl,
                rebalance_idle=self._rebalance_idle,
            )
            if result.status in ("queued", "pending", "answered"):
                return result.status
            if result.status == "stranded":
                self._recovery.recover_worker(result.worker_id)
                last = ""
                continue
            last = result.worker_id
            if not last:
                self._placement.active_workers(fresh=True)
        raise NoLiveWorkers(
            f"no live worker took session {job.session_key!r} after {_ATTEMPTS} attempts"
        )
