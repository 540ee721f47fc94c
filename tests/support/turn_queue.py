"""Shortcuts over :class:`cluster.transport.TurnQueue` for tests that route by hand."""

from __future__ import annotations

from cluster.errors import NoLiveWorkers
from cluster.jobs import ClaimedTurn, TurnJob
from cluster.transport import TurnQueue

REPLY_TTL = 3600.0
"""Seconds a re-pushed stored reply waits for its caller (what ``submit`` needs)."""


def enqueue(queue: TurnQueue, worker_id: str, job: TurnJob) -> bool:
    """Queue a turn on ``worker_id``, which must be (or become) the session's owner.

    :meth:`TurnQueue.submit` with ``worker_id`` as both target and proposal.

    Returns:
        ``True`` if queued, ``False`` if the message was pending already (or
        answered again from its stored reply).

    Raises:
        NoLiveWorkers: ``worker_id`` is not the session's eligible owner, or the
            message's earlier job is stranded on a dead worker.
    """
    result = queue.submit(job, target=worker_id, proposal=worker_id, reply_ttl=REPLY_TTL)
    if result.status in ("queued", "pending", "answered"):
        return result.status == "queued"
    raise NoLiveWorkers(
        f"turn {job.message_id!r} of session {job.session_key!r} was not queued on "
        f"{worker_id!r}: {result.status} ({result.worker_id or 'no eligible worker'})"
    )


def claim(queue: TurnQueue, worker_id: str, *, block: float) -> ClaimedTurn | None:
    """Claim the next turn of a worker's queue (``claim_many`` with a limit of 1)."""
    claimed = queue.claim_many(worker_id, 1, block=block)
    return claimed[0] if claimed else None
