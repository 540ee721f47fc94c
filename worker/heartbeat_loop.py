"""The heartbeat thread of a worker: beat every interval, look for dead workers when one may
have died.

:class:`HeartbeatLoop` owns the thread and its timing; what one beat does
(renew membership, store health, notice a drain request or a declared
death) is the worker process' ``beat`` callable, and the dead-worker check
its ``recover_dead`` (:mod:`cluster.recovery`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from cluster.errors import WorkerIdInUse

log = logging.getLogger("worker.process")

# Seconds between two looks for dead workers (at most; the heartbeat interval if shorter).
# A worker whose heartbeat expires at t is looked at t + this (Redis' clock and ours differ).
EXPIRY_MARGIN = 0.05


class HeartbeatLoop:
    """Runs ``beat`` every ``interval`` seconds, and ``recover_dead`` when a heartbeat expires.

    Args:
        interval: Seconds between two beats.
        beat: One heartbeat; returns the seconds until another worker's heartbeat expires.
        recover_dead: The dead-worker check (hands a dead worker's turns on).
        on_fatal: Called once when another live process holds this worker's id; the loop ends.
    """

    def __init__(
        self,
        *,
        interval: float,
        beat: Callable[[], float | None],
        recover_dead: Callable[[], Any],
        on_fatal: Callable[[WorkerIdInUse], None],
    ) -> None:
        self._interval = interval
        self._beat = beat
        self._recover_dead = recover_dead
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Start the thread (the first beat comes one interval later)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and join it."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def is_alive(self) -> bool:
        """Whether the thread runs (the liveness probe)."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        """Beat every ``interval``; look for dead workers when one may have died.

        Each beat says when the next other worker's heartbeat expires; when
        that falls before the next beat, the dead-worker check runs right
        then, so a dead worker is noticed at its TTL without polling (an idle
        worker sends one heartbeat per interval and nothing else).
        """
        failing = False
        interval = self._interval
        next_beat = time.monotonic() + interval
        next_check: float | None = None
        while True:
            due = next_beat if next_check is None else min(next_beat, next_check)
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + interval
                    expiry = self._beat()
                    if expiry is not None and now + expiry < next_beat:
                        next_check = now + max(0.0, expiry) + EXPIRY_MARGIN
                if next_check is not None and time.monotonic() >= next_check:
                    next_check = None
                    self._recover_dead()
                failing = False
            except WorkerIdInUse as exc:
                self._on_fatal(exc)
                return
            except redis.RedisError as exc:
                if not failing:
                    log.warning("heartbeat failed: %s (retrying every %gs)", exc, interval)
                failing = True
            except Exception:
                log.exception("heartbeat step failed")
