"""Routing: which worker runs a session's next turn.

Sticky first: the owner record keeps a session with its worker while that
worker is alive and not draining. Otherwise the consistent-hash ring over the
active workers proposes the new owner, and the ownership script assigns it
(epoch + 1) in the same round trip that looks the owner up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cluster.errors import NoLiveWorkers
from cluster.membership import RedisMembership
from cluster.ownership import Ownership, RedisOwnershipStore
from cluster.ring import HashRing


class Router:
    """Maps session keys to live workers; caches the live set briefly.

    Args:
        membership: the membership store (live and draining workers).
        ownership: the owner records.
        refresh_interval: seconds a live-set snapshot is reused (well under the heartbeat TTL).
        clock: monotonic clock (injected for tests).
    """

    def __init__(
        self,
        *,
        membership: RedisMembership,
        ownership: RedisOwnershipStore,
        refresh_interval: float = 0.5,
        vnodes: int = 160,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._membership = membership
        self._ownership = ownership
        self._refresh_interval = refresh_interval
        self._vnodes = vnodes
        self._clock = clock
        self._lock = threading.Lock()
        self._ring = HashRing((), vnodes=vnodes)
        self._active: tuple[str, ...] = ()
        self._fetched_at = float("-inf")

    def active_workers(self, *, fresh: bool = False) -> tuple[str, ...]:
        """Ids of the live, non-draining workers (cached for ``refresh_interval``)."""
        with self._lock:
            if fresh or self._clock() - self._fetched_at > self._refresh_interval:
                active = tuple(sorted(w.worker_id for w in self._membership.active_workers()))
                if active != self._active:
                    self._ring = HashRing(active, vnodes=self._vnodes)
                    self._active = active
                self._fetched_at = self._clock()
            return self._active

    def route(self, session_key: str) -> Ownership:
        """Owner of ``session_key``, assigning one if it has none or its owner left.

        Raises:
            NoLiveWorkers: no live, non-draining worker exists.
        """
        active = self.active_workers()
        if not active:
            active = self.active_workers(fresh=True)
        if not active:
            raise NoLiveWorkers(
                "no live worker can take the session: start one with `agent-cluster worker "
                "--redis-url URL` (or check that workers reach the same Redis and namespace)"
            )
        with self._lock:
            proposed = self._ring.owner(session_key)
        return self._ownership.lookup_or_assign(session_key, eligible=active, proposed=proposed)

    def next_owners(self, session_key: str, n: int = 2) -> list[str]:
        """The ring's preference list for a session, for handoff during a drain."""
        self.active_workers()
        with self._lock:
            return self._ring.preference_list(session_key, n)
