"""Which turn may start next: per-session FIFO, one turn per session, a global cap.

:class:`SessionScheduler` is the pure decision part of the worker's turn
executor (:mod:`worker.executor`): no threads, no locks, no clock. The
executor calls it under its lock and starts whatever it hands out.

Rules:

* the turns of one session start in order, one at a time: by their
  ``order`` key (the session's message sequence), then in the order they were
  added; the next one is handed out only after :meth:`SessionScheduler.finish`
  or :meth:`SessionScheduler.defer`;
* a deferred turn (it could not start yet: another worker still runs the
  session, or an earlier message has not arrived) goes back to the head of
  its session, which sleeps until :meth:`SessionScheduler.wake` or until a
  new turn of the session arrives (it may be the earlier message);
* at most ``concurrency`` turns are running;
* a session with turns waiting behind its running turn never holds up other
  sessions: sessions become ready in the order their head turn became
  startable (arrival, or the end of their previous turn), so they take turns
  fairly.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from typing import Generic, TypeVar

from cluster.errors import AgentClusterError

__all__ = ["SessionScheduler"]

T = TypeVar("T")


class SessionScheduler(Generic[T]):
    """Per-session FIFO queues with a cap on running items (not thread-safe)."""

    def __init__(self, concurrency: int) -> None:
        """Create an empty scheduler.

        Args:
            concurrency: Most items running at once (>= 1).

        Raises:
            AgentClusterError: ``concurrency`` is not a positive integer.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise AgentClusterError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.concurrency = concurrency
        # session -> [(order, arrival, item)], sorted
        self._waiting: dict[str, list[tuple[int, int, T]]] = {}
        self._ready: deque[str] = deque()  # sessions not running whose head may start
        self._running: dict[str, tuple[int, int]] = {}  # session -> (order, arrival) running
        self._sleeping: set[str] = set()
        self._arrivals = itertools.count()
        self._waiting_count = 0

    # -- counts -------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Items handed out and not finished."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Items added and not handed out yet (ready or behind their session's running item)."""
        return self._waiting_count

    @property
    def capacity(self) -> int:
        """Free slots: ``concurrency`` minus running and waiting items, at least 0."""
        return max(0, self.concurrency - self.running - self.waiting)

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self._running and not self._waiting_count

    def is_running(self, session: str) -> bool:
        """Whether an item of ``session`` is running."""
        return session in self._running

    # -- decisions ---------------------------------------------------------------

    def add(self, session: str, item: T, order: int = 0) -> None:
        """Queue ``item`` in ``session`` by ``order`` (then arrival); wakes a sleeping session."""
        self._insert(session, (order, next(self._arrivals), item))
        if session in self._sleeping:
            self.wake(session)

    def _insert(self, session: str, entry: tuple[int, int, T]) -> None:
        queue = self._waiting.get(session)
        if queue is None:
            queue = self._waiting[session] = []
            if session not in self._running and session not in self._sleeping:
                self._ready.append(session)
        bisect.insort(queue, entry, key=lambda e: (e[0], e[1]))
        self._waiting_count += 1

    def defer(self, session: str, item: T) -> None:
        """Put the running item of ``session`` back at its place and let the session sleep.

        The session's items start again after :meth:`wake` (or :meth:`add`).

        Raises:
            AgentClusterError: no item of ``session`` is running.
        """
        if session not in self._running:
            raise AgentClusterError(f"session {session!r} has no running item to defer")
        order, arrival = self._running.pop(session)
        self._sleeping.add(session)
        self._insert(session, (order, arrival, item))

    def wake(self, session: str) -> None:
        """End a deferred session's sleep: its head item may start again."""
        if session not in self._sleeping:
            return
        self._sleeping.discard(session)
        if session in self._waiting and session not in self._running:
            self._ready.append(session)

    def next_ready(self) -> tuple[str, T] | None:
        """Hand out the next item that may start now, marking its session running.

        Returns:
            ``(session, item)``, or ``None`` when ``concurrency`` items run or
            every waiting item is behind a running item of its session.
        """
        if len(self._running) >= self.concurrency or not self._ready:
            return None
        session = self._ready.popleft()
        queue = self._waiting[session]
        order, arrival, item = queue.pop(0)
        if not queue:
            del self._waiting[session]
        self._waiting_count -= 1
        self._running[session] = (order, arrival)
        return session, item

    def finish(self, session: str) -> None:
        """Record that the running item of ``session`` is done.

        Raises:
            AgentClusterError: no item of ``session`` is running.
        """
        if session not in self._running:
            raise AgentClusterError(f"session {session!r} has no running item to finish")
        del self._running[session]
        if session in self._waiting and session not in self._sleeping:
            self._ready.append(session)

    def drop_waiting(self) -> list[tuple[str, T]]:
        """Remove every item not handed out yet (shutdown without waiting).

        Returns:
            The dropped ``(session, item)`` pairs, each session's in order.
        """
        dropped = [
            (session, item) for session, queue in self._waiting.items() for _, _, item in queue
        ]
        self._waiting.clear()
        self._ready.clear()
        self._sleeping.clear()
        self._waiting_count = 0
        return dropped
