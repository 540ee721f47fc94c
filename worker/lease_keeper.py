"""Keeps the running-turn leases of this worker alive while their turns run.

A turn hands its lease to the :class:`LeaseKeeper` the moment it is acquired
(history load and agent build included), and takes it back when it ends. The
keeper extends every held lease each ``ttl / 3``. A lease it cannot extend
because another token holds it, or that it could not extend for a whole TTL
because Redis was unreachable (others may have taken the session over by
now), is reported lost exactly once: its turn is interrupted and can write
nothing afterwards anyway (every write is fenced by the token).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cluster.leases import Lease, RedisLeaseStore

__all__ = ["LeaseKeeper"]

log = logging.getLogger("worker.lease_keeper")


@dataclass
class _Held:
    lease: Lease
    on_lost: Callable[[], None] | None
    extended_at: float
    lost: bool = False


class LeaseKeeper:
    """Extends held leases on one thread; :meth:`stop` joins it."""

    def __init__(
        self,
        leases: RedisLeaseStore,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the keeper (not started).

        Args:
            leases: The lease store.
            ttl: Lease time to live, seconds; leases are extended every ``ttl / 3``.
            clock: Monotonic clock.
        """
        self._leases = leases
        self._ttl = ttl
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        """Start extending in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop extending and join the thread."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def hold(self, lease: Lease) -> None:
        """Keep ``lease`` alive from now on (no interrupt target yet)."""
        with self._lock:
            self._held[lease.session_key] = _Held(lease, None, self._clock())

    def on_lost(self, lease: Lease, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) if ``lease`` is lost; at once if it already was."""
        with self._lock:
            held = self._held.get(lease.session_key)
            if held is None or held.lease.fence != lease.fence:
                return
            held.on_lost = callback
            lost = held.lost
        if lost:
            callback()

    def is_lost(self, lease: Lease) -> bool:
        """Whether the keeper found ``lease`` lost."""
        with self._lock:
            held = self._held.get(lease.session_key)
            return held is not None and held.lease.fence == lease.fence and held.lost

    def drop(self, lease: Lease) -> None:
        """Stop keeping ``lease`` alive (its turn ended)."""
        with self._lock:
            held = self._held.get(lease.session_key)
            if held is not None and held.lease.fence == lease.fence:
                del self._held[lease.session_key]

    def held(self) -> list[Lease]:
        """The leases held now."""
        with self._lock:
            return [h.lease for h in self._held.values()]

    def fail_over(self) -> None:
        """Report every held lease lost now: a failover voided them all (each turn stops).

        Called when one fenced write was refused because its lease was granted
        by an earlier Redis primary; the other running turns would find out
        at their next extension or write anyway, this just stops them sooner.
        """
        with self._lock:
            fresh = [(h.lease, h.on_lost) for h in self._held.values() if not h.lost]
            for entry in self._held.values():
                entry.lost = True
        for lease, callback in fresh:
            log.warning(
                "lease of session %s (fence %s) was voided by a Redis failover; "
                "interrupting its turn",
                lease.session_key,
                lease.fence,
            )
            if callback is not None:
                callback()

    def extend_all(self) -> None:
        """Extend every held lease once (the background thread's step)."""
        with self._lock:
            held = [h for h in self._held.values() if not h.lost]
        for entry in held:
            try:
                extended = self._leases.extend(entry.lease, self._ttl)
            except redis.RedisError as exc:
                if self._clock() - entry.extended_at < self._ttl:
                    log.warning("could not extend lease of %s: %s", entry.lease.session_key, exc)
                    continue
                extended = False
            if extended:
                entry.extended_at = self._clock()
                continue
            with self._lock:
                if self._held.get(entry.lease.session_key) is not entry:
                    continue  # its turn ended (and released the lease) meanwhile: not lost
                entry.lost = True
                callback = entry.on_lost
            log.warning(
                "lease of session %s (fence %s) is lost; interrupting its turn",
                entry.lease.session_key,
                entry.lease.fence,
            )
            if callback is not None:
                callback()

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            self.extend_all()
