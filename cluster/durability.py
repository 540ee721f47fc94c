"""Acknowledged means replicated, where the operator asks for it (``redis_durability``).

Replication in Redis is asynchronous: a primary acknowledges a write before
any replica has it, and a failover can promote a replica that never got it.
With durability ``replica`` the writes a caller is told about (a message
accepted, a lease granted, a job claimed, a turn committed) are followed, on
the same connection and in the same round trip, by ``WAIT n timeout`` and
``ROLE``: the write counts only once every replica attached to the primary,
and at least ``redis_durability_replicas`` (default 1), confirm it. Sentinel
may promote any of them, and not always the one with the most data (the
chaos run caught it promoting a node that had rejoined as a replica a moment
before), so one replica's word is not enough once there are two. ``n`` is
the larger of that floor and the number of replicas the last ``ROLE``
listed (a process reads ``ROLE`` once before its first durable write); when
more are attached now than were asked for (a replica joined), the write is
not acknowledged this time and the next one waits for all of them.

The floor closes the last window: when Sentinel wrongly fails over a primary
that is still serving, that primary keeps taking writes until Sentinel
demotes it, and the replica not yet moved to the promoted one still confirms
them, for a second or two. Those writes are lost. With the floor at the
number of replicas run, the old primary, which lost one replica to the
promotion, cannot acknowledge anything; the price is that one replica down
stops acknowledgements until it is back. A
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
    """The number of replicas the next ``WAIT`` waits for (learned from ``ROLE``)."""

    def __init__(self) -> None:
        self.count = 0  # 0: not learned yet (the floor, ``replicas``, applies)


@dataclass(frozen=True)
class Durability:
    """How a durable script's write is acknowledged.

    Attributes:
        mode: ``none`` (the primary's word is enough) or ``replica`` (every
            attached replica, and at least ``replicas``, must confirm within
            ``timeout_ms``).
        timeout_ms: Longest wait for the replicas' confirmation, in ms.
        replicas: Fewest replicas that must confirm (the operator's floor: set
            to the number of replicas run, a primary that lost one to a
            promotion cannot acknowledge anything).
    """

    mode: str = "none"
    timeout_ms: int = 500
    replicas: int = 1
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
        replicas = self.replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(
                f"redis_durability_replicas must be a whole number >= 1 (the fewest replicas "
                f"that confirm a write), got {replicas!r}"
            )

    def _needed(self, attached: int) -> int:
        return max(self.replicas, attached)

    def waits_for(self, script: str) -> bool:
        """Whether ``script``'s write must be confirmed by a replica."""
        return self.mode == "replica" and script in DURABLE_SCRIPTS

    @property
    def unlearned(self) -> bool:
        """Whether this process has not read how many replicas are attached yet.

        Before its first durable write a process reads ``ROLE`` once
        (:meth:`learn`), so that write's ``WAIT`` already asks for every
        replica instead of being refused for asking too few.
        """
        return self.mode == "replica" and self._expected.count == 0

    def learn(self, role: Any) -> None:
        """Take the number of attached replicas from a ``ROLE`` reply."""
        self._expected.count = attached_replicas(role)

    def learn_once(self, client: Any) -> None:
        """Read ``ROLE`` on a sync ``client`` if this process has not yet (:attr:`unlearned`)."""
        if self.unlearned:
            self.learn(client.role())

    def queue_wait(self, pipe: Any) -> None:
        """Queue ``WAIT`` and ``ROLE`` behind a durable write on its pipeline (sync or asyncio).

        The pipeline's results end with :data:`WAIT_REPLIES` replies: pass
        them to :meth:`confirm` or :meth:`confirmed`.
        """
        pipe.wait(self._needed(self._expected.count), self.timeout_ms)
        pipe.role()

    def confirmed(self, acknowledged: Any, role: Any) -> bool:
        """Whether every replica attached now, and at least ``replicas``, confirmed the write.

        Also learns how many replicas the next ``WAIT`` waits for.
        """
        for reply in (acknowledged, role):
            if isinstance(reply, Exception):
                raise reply
        self.learn(role)
        return int(acknowledged) >= self._needed(attached_replicas(role))

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
            f"{int(acknowledged)} of {self._needed(attached)} Redis replica(s) confirmed the "
            f"write of {script} within {self.timeout_ms} ms ({attached} attached; "
            f"redis_durability is replica: every attached replica, and at least "
            f"redis_durability_replicas={self.replicas}, must, as a failover may promote any of "
            "them): it was not acknowledged and may be lost at a failover; retry (resubmit a "
            "message with the same message id). If replicas are down, bring them back, or "
            "lower redis_durability_replicas, or set redis_durability to none"
        )


NO_DURABILITY = Durability()
"""The default: acknowledged by the primary."""
