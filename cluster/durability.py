"""Acknowledged means replicated, where the operator asks for it (``redis_durability``).

Replication in Redis is asynchronous: a primary acknowledges a write before
any replica has it, and a failover can promote a replica that never got it.
With durability ``replica`` the writes a caller is told about (a message
accepted, a lease granted, a job claimed, a turn committed) are followed, on
the same connection and in the same round trip, by ``WAIT 1 timeout``: the
write counts only once at least one replica confirms it. A timeout raises
:class:`~cluster.errors.NotReplicated` (retryable), never success; the write
itself stays on the primary (a resubmitted message finds its job, a re-begun
turn finds its own lease or its stored reply).

The policy (which scripts, which mode) lives here; :class:`cluster.scripts.ScriptSet`
puts the ``WAIT`` into the pipeline of exactly those scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.errors import ConfigError, NotReplicated

__all__ = ["DURABILITY_MODES", "DURABLE_SCRIPTS", "NO_DURABILITY", "Durability"]

DURABILITY_MODES = ("none", "replica")

DURABLE_SCRIPTS = frozenset(
    {"turn_enqueue", "lease_acquire", "turn_begin", "turn_claim", "session_commit"}
)
"""The scripts whose effect a caller is told about: accept, grant, claim, commit."""

# The WAIT must come back before the socket read times out (redis-py's default is 5 s).
MAX_TIMEOUT_MS = 4000


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
        """Queue the ``WAIT`` behind a durable write on its pipeline (sync or asyncio)."""
        pipe.wait(1, self.timeout_ms)

    def confirm(self, script: str, acknowledged: Any) -> None:
        """Check the ``WAIT`` reply of ``script``'s write.

        Raises:
            NotReplicated: no replica confirmed it within the timeout.
        """
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if int(acknowledged) >= 1:
            return
        raise NotReplicated(
            f"no Redis replica confirmed the write of {script} within {self.timeout_ms} ms "
            "(redis_durability is replica): it was not acknowledged and may be lost at a "
            "failover; retry (resubmit a message with the same message id). If no replica is "
            "connected, fix replication or set redis_durability to none"
        )


NO_DURABILITY = Durability()
"""The default: acknowledged by the primary."""
