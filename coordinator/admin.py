"""Operator actions on a running cluster: drain a worker and watch it leave.

``agent-cluster drain WORKER [--drain-timeout S] [--wait]`` marks the worker
draining in Redis (from that instant the enqueue script places no turn on
it) and announces it; the worker, which hears the event or reads the state at
its next heartbeat, hands its queued turns over, finishes its running ones
(up to the timeout), soft-releases its agents, deregisters and exits 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cluster.errors import ConfigError
from cluster.event_log import ClusterEventLog
from cluster.events import EventBus
from cluster.keys import Keyspace
from cluster.membership import RedisMembership, WorkerState
from cluster.ownership import RedisOwnershipStore
from cluster.transport import TurnQueue

__all__ = ["DrainProgress", "drain_worker", "drain_progress", "wait_for_drain"]


@dataclass(frozen=True)
class DrainProgress:
    """Where a drain stands.

    Attributes:
        worker_id: The draining worker.
        registered: Whether it is still registered (it deregisters when done).
        queued: Turns still on its queue (handed over at the start of the drain).
        in_flight: Turns it has claimed and not finished.
        sessions: Sessions it still owns.
    """

    worker_id: str
    registered: bool
    queued: int
    in_flight: int
    sessions: int

    def line(self) -> str:
        """One progress line for a terminal.

        Once the worker is gone, the sessions it owned are not moved yet:
        each goes to its next owner with its next message.
        """
        if not self.registered:
            return (
                f"{self.worker_id}: gone (deregistered, {self.in_flight} turn(s) running, "
                f"{self.queued} queued); the {self.sessions} session(s) it owned move to "
                "their next owner with their next message"
            )
        state = "draining"
        return (
            f"{self.worker_id}: {state}, {self.in_flight} turn(s) running or claimed, "
            f"{self.queued} queued, {self.sessions} session(s) still owned"
        )


def drain_worker(
    client: redis.Redis, keyspace: Keyspace, worker_id: str, *, timeout: float | None = None
) -> None:
    """Mark ``worker_id`` draining and announce it.

    Args:
        client: Redis client.
        keyspace: The cluster's keyspace.
        worker_id: A registered worker.
        timeout: Seconds the worker waits for running turns before cutting
            them off (and handing them on); ``None``: its own drain timeout.

    Raises:
        UnknownWorker: the worker is not registered.
        ConfigError: ``timeout`` is negative.
    """
    if timeout is not None and timeout < 0:
        raise ConfigError(f"drain timeout must be seconds >= 0, got {timeout!r}")
    membership = RedisMembership(client, keyspace, heartbeat_ttl=3600)
    membership.set_state(worker_id, WorkerState.DRAINING)
    event: dict[str, object] = {"type": "drain", "worker": worker_id}
    if timeout is not None:
        event["timeout"] = timeout
    EventBus(client, keyspace).publish(event)
    ClusterEventLog(client, keyspace).record(
        "drain_requested",
        f"drain of {worker_id} requested"
        + ("" if timeout is None else f" (running turns get {timeout:g}s)"),
        worker=worker_id,
    )


def drain_progress(client: redis.Redis, keyspace: Keyspace, worker_id: str) -> DrainProgress:
    """Read how far a drain has got (a few round trips)."""
    queue = TurnQueue(client, keyspace, job_timeout=60, result_ttl=60)
    registered = client.hexists(keyspace.members_state(), worker_id)
    return DrainProgress(
        worker_id=worker_id,
        registered=bool(registered),
        queued=queue.pending(worker_id),
        in_flight=queue.inflight_count(worker_id),
        sessions=len(RedisOwnershipStore(client, keyspace).sessions_owned_by(worker_id)),
    )


def wait_for_drain(
    client: redis.Redis,
    keyspace: Keyspace,
    worker_id: str,
    *,
    deadline: float,
    report: Callable[[DrainProgress], None],
    interval: float = 0.5,
) -> bool:
    """Report progress until the worker deregistered or ``deadline`` (monotonic) passed.

    Returns:
        Whether the worker left.
    """
    while True:
        progress = drain_progress(client, keyspace, worker_id)
        report(progress)
        if not progress.registered:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
