"""Acknowledged means replicated, where the operator asks for it (``redis_durability``).

Replication in Redis is asynchronous: a primary acknowledges a write before
any replica has it, and a failover can promote a replica that never got it.
With durability ``replica`` the writes a caller is told about (a message
accepted, a lease granted, a job claimed, a turn committed) are followed, on
the same connection and in the same round trip, by ``WAIT n timeout`` and
``ROLE``: the write counts only once every replica attached to the primary
(at least one) confirms it. Sentinel may promote any of them, and it is not
always the one with the most data (a replica still loading a full sync, or
one whose offset Sentinel read a moment ago, can be chosen), so one replica's
word is not enough once there are two. ``n`` is the number of replicas the
last ``ROLE`` listed; when more are attached now than confirmed, the write is
not acknowledged this time and the next one waits for all of them. A
timeout raises :class:`~cluster.errors.NotReplicated` (retryable), never
success; the write itself stays on the primary (a resubmitted message finds
its job, a re-begun turn finds its own lease or its stored reply).

The policy (which scripts, which mode) lives here; :class:`cluster.scripts.ScriptSet`
puts the ``WAIT`` into the pipeline of exactly those scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cluster.errors import ConfigError, NotReplicated

__all__ = [
    "DURABILITY_MODES",
    "DURABLE_SCRIPTS",
    "NO_DURABILITY",
    "WAIT_REPLIES",
    "Durability",
    "attached_replicas",
]

DURABILITY_MODES = ("none", "replica")

DURABLE_SCRIPTS = frozenset(
    {"turn_enqueue", "lease_acquire", "turn_begin", "turn_claim", "session_commit"}
)
"""The scripts whose effect a caller is told about: accept, grant, claim, commit."""

# The WAIT must come back before the socket read times out (redis-py's default is 5 s).
MAX_TIMEOUT_MS = 4000

WAIT_REPLIES = 2
"""Replies :meth:`Durability.queue_wait` adds to a pipeline's results (``WAIT``, ``ROLE``)."""


def attached_replicas(role: Any) -> int:
    """How many replicas a primary's ``ROLE`` reply lists (0 for anything else)."""
    if not isinstance(role, list | tuple) or len(role) < 3:
        return 0
    kind = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
    return len(role[2]) if kind == "master" and isinstance(role[2], list | tuple) else 0


class _Expected:
    """The number of replicas the next ``WAIT`` waits for (learned from ``ROLE``; >= 1)."""

    def __init__(self) -> None:
        self.count = 1


@dataclass(frozen=True)
class Durability:
    """How a durable script's write is acknowledged.

    Attributes:
        mode: ``none`` (the primary's word is enough) or ``replica`` (one
            replica must confirm within ``timeout_ms``).
        timeout_ms: Longest wait for the replica's confirmation, in ms.
    """

    mode: str = "none"
    timeout_ms: int = 500
    _expected: _Expected = field(default_factory=_Expected, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in DURABILITY_MODES:
            raise ConfigError(
                f"redis_durability must be one of {', '.join(DURABILITY_MODES)}, got {self.mode!r}"
            )
        timeout = self.timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise ConfigError(
                f"redis_durability_timeout must be whole milliseconds, got {timeout!r}"
            )
        if not 1 <= timeout <= MAX_TIMEOUT_MS:
            raise ConfigError(
                f"redis_durability_timeout must be 1-{MAX_TIMEOUT_MS} ms (a wait must end "
                f"before the connection's 5 s read timeout), got {timeout!r}"
            )

    def waits_for(self, script: str) -> bool:
        """Whether ``script``'s write must be confirmed by a replica."""
        return self.mode == "replica" and script in DURABLE_SCRIPTS

    def queue_wait(self, pipe: Any) -> None:
        """Queue ``WAIT`` and ``ROLE`` behind a durable write on its pipeline (sync or asyncio).

        The pipeline's results end with :data:`WAIT_REPLIES` replies: pass
        them to :meth:`confirm` or :meth:`confirmed`.
        """
        pipe.wait(self._expected.count, self.timeout_ms)
        pipe.execute_command("ROLE")

    def confirmed(self, acknowledged: Any, role: Any) -> bool:
        """Whether every replica attached now (at least one) confirmed the write.

        Also learns how many replicas the next ``WAIT`` waits for.
        """
        for reply in (acknowledged, role):
            if isinstance(reply, Exception):
                raise reply
        needed = max(1, attached_replicas(role))
        self._expected.count = needed
        return int(acknowledged) >= needed

    def confirm(self, script: str, acknowledged: Any, role: Any) -> None:
        """Check the ``WAIT`` and ``ROLE`` replies of ``script``'s write.

        Raises:
            NotReplicated: not every attached replica (or no replica at all)
                confirmed it within the timeout.
        """
        if self.confirmed(acknowledged, role):
            return
        attached = attached_replicas(role)
        raise NotReplicated(
            f"{int(acknowledged)} of {max(1, attached)} Redis replica(s) confirmed the write of "
            f"{script} within {self.timeout_ms} ms (redis_durability is replica: every attached "
            "replica must, as a failover may promote any of them): it was not acknowledged "
            "and may be lost at a failover; retry (resubmit a message with the same message "
            "id). If no replica is connected, fix replication or set redis_durability to none"
        )


NO_DURABILITY = Durability()
"""The default: acknowledged by the primary."""
