"""An agent cache the tests can look into: what the product never needs to ask it."""

from __future__ import annotations

from worker.cache import AgentCache
from worker.cache.entry import A
from worker.cache.policy import Pending


class InspectableCache(AgentCache[A]):
    """:class:`AgentCache` plus reads for assertions (no LRU change, no counters touched)."""

    def peek(self, session_id: str) -> A | Pending | None:
        """The session's cached agent, :data:`~worker.cache.PENDING` or ``None``."""
        with self._lock:
            entry = self._state.entries.get(session_id)
            return None if entry is None else entry.agent

    def running_sessions(self) -> frozenset[str]:
        """Sessions with a turn checked out (or an agent being built) right now."""
        with self._lock:
            return frozenset(self._state.running)

    def wait_for_releases(self, timeout: float | None = None) -> bool:
        """Block until every release handed off so far has finished; false on timeout."""
        return self._releaser.wait_idle(timeout)
