"""Answers of a turn besides its commit: deferral backoff, error replies, ``/new``, tenant usage.

:class:`TurnAnswers` is what :class:`worker.turns.TurnRunner` uses when a
turn does not end in the normal fenced commit: a turn that cannot run yet is
deferred with a growing backoff (longer after a Redis error), a failing turn
gets a clear error reply, a ``/new`` command resets the session under its
lease, and every answered turn leaves its tenant's turns in flight.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from cluster.leases import Lease
from cluster.tenants import TenantStore
from cluster.tool_state import RedisToolStateStore
from cluster.transport import TurnJob
from worker.cache import EvictionCause
from worker.turn_outcome import Deferred, Finished, TurnOutcome
from worker.turn_services import TurnServices

log = logging.getLogger("worker.turns")

# Backoff of a deferred turn: first delay, growth, cap (seconds).
RETRY_FIRST = 0.05
RETRY_CAP = 1.0
REDIS_RETRY_FIRST = 0.2
REDIS_RETRY_CAP = 2.0


class TurnAnswers:
    """Deferrals (with their per-job backoff count), error replies, resets and tenant usage."""

    def __init__(self, services: TurnServices) -> None:
        self.services = services
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._tenants = TenantStore(services.client, services.keyspace)

    def settled(self, job_id: str) -> None:
        """The job left this worker's retries (answered or handed on): forget its backoff."""
        with self._lock:
            self._attempts.pop(job_id, None)

    def defer(self, job_id: str, why: str, *, redis_error: bool) -> Deferred:
        """Try the job again later, each time later (capped), slower after a Redis error."""
        with self._lock:
            attempt = self._attempts.get(job_id, 0)
            self._attempts[job_id] = attempt + 1
        first, cap = (
            (REDIS_RETRY_FIRST, REDIS_RETRY_CAP) if redis_error else (RETRY_FIRST, RETRY_CAP)
        )
        return Deferred(f"turn {job_id} deferred: {why}", delay=min(cap, first * 2**attempt))

    def error(self, job: TurnJob, job_id: str, exc: BaseException) -> TurnOutcome:
        """Answer a failed turn with a clear error reply (deferred if Redis cannot take it)."""
        self.settled(job_id)
        self.services.metrics.turn_outcome("error")
        reply = {
            "ok": False,
            "message_id": job.message_id,
            "worker_id": self.services.worker_id,
            "error": f"{type(exc).__name__}: {exc}",
        }
        try:
            self.services.replies.push(job.session_key, job.message_id, reply)
        except redis.RedisError as push_error:
            return self.defer(
                job_id, f"its error reply could not be pushed ({push_error})", redis_error=True
            )
        self.tenant_answered(job, job_id, usage=None, cost=0.0)
        return Finished()

    def reset(self, job: TurnJob, job_id: str, lease: Lease) -> None:
        """``/new``: end the session for good (agent, tools, history), then answer.

        The agent's clients are released and the session's tools are torn down
        here, under this turn's lease and before the reset releases it: a
        teardown after that (the cache's hard close runs on another thread,
        with the fenced store of the agent's last turn) would be refused as
        a stale writer, and could hit the next turn's fresh sandbox.
        """
        services = self.services
        fenced_env = services.tool_env.with_state(
            RedisToolStateStore(services.client, services.keyspace, lease=lease)
        )
        services.cache.evict(job.session_key, cause=EvictionCause.SESSION_END)
        fenced_env.teardown(job.session_key)
        if services.notices is not None:  # its processes are gone with the old conversation
            services.notices.forget(job.session_key)
        services.sessions.reset(
            lease,
            message_id=job.message_id,
            reply={
                "ok": True,
                "message_id": job.message_id,
                "text": "Session reset: history cleared, tools closed. A new conversation starts.",
                "worker_id": services.worker_id,
                "reset": True,
                "turn": 0,
                "fence": lease.token,
                "epoch": lease.epoch,
            },
            job_id=job_id,
            reply_ttl=services.reply_ttl,
        )

    def tenant_answered(
        self, job: TurnJob, job_id: str, *, usage: dict[str, Any] | None, cost: float
    ) -> None:
        """Release the turn from its tenant's turns in flight and add its usage (best effort).

        The reply is already committed or delivered: a Redis error here only
        leaves the in-flight entry to expire and this turn out of the usage.
        """
        try:
            self._tenants.turn_answered(job.session_key, job_id, usage=usage, cost=cost)
        except redis.RedisError as exc:
            log.warning(
                "turn %s of %s: tenant usage not recorded: %s", job.message_id, job.session_key, exc
            )
