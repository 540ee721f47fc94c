"""Routing: which worker's queue a session's next message goes to.

Sticky first: the owner record keeps a session with its worker while that
worker is live and not draining; otherwise the consistent-hash ring over the
active workers names the new owner. Routing and queueing are one atomic
script (:meth:`cluster.transport.TurnQueue.submit`), so a message can never
land on the queue of a worker that died or started draining a moment ago.
The :class:`Router` only supplies the script's guesses: the ring's proposal
(:class:`cluster.placement.Placement`, a briefly cached live set) and the
owner it last saw for the session; when a guess is stale the script says so
and the router retries with what the script reported.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cluster.placement import Placement

__all__ = ["Router"]

_HINTS = 100_000


class Router:
    """Guesses a session's target worker; the enqueue script decides."""

    def __init__(self, placement: Placement) -> None:
        """Route with ``placement`` (live set + ring)."""
        self.placement = placement
        self._hints: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def target(self, session_key: str) -> tuple[str, str]:
        """``(target, proposal)``: the owner last seen for the session (else the ring's choice),
        and the ring's choice.

        Raises:
            NoLiveWorkers: no live, non-draining worker exists.
        """
        proposal = self.placement.proposal(session_key)
        with self._lock:
            hint = self._hints.get(session_key)
        return (hint or proposal), proposal

    def remember(self, session_key: str, worker_id: str) -> None:
        """Record where the session's last message went (a bounded LRU of hints)."""
        with self._lock:
            self._hints[session_key] = worker_id
            self._hints.move_to_end(session_key)
            while len(self._hints) > _HINTS:
                self._hints.popitem(last=False)

    def forget(self, session_key: str) -> None:
        """Drop a stale hint."""
        with self._lock:
            self._hints.pop(session_key, None)
