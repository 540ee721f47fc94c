"""One inactivity watchdog thread for all the turns of a process.

A turn quiet for longer than its agent's ``inactivity_timeout`` (no model
reply, no tool result) is interrupted. One thread watches every running
turn, so a worker running a thousand turns does not run a thousand watchdog
threads; it exists only while some turn runs.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["Watched", "Watchdog", "watchdog"]

_MIN_POLL = 0.01
_MAX_POLL = 5.0


class Watched(Protocol):
    """What the watchdog needs of a running agent."""

    inactivity_timeout: float

    def check_inactivity(self) -> bool:
        """Interrupt the turn when it has been quiet too long; True when it did."""
        ...


class Watchdog:
    """Polls the watched turns; each is checked at least every quarter of its timeout."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._watched: dict[int, Watched] = {}
        self._thread: threading.Thread | None = None
        self._poll = _MAX_POLL  # the thread's current wait

    def watch(self, agent: Watched) -> None:
        """Start watching ``agent``'s running turn."""
        with self._changed:
            self._watched[id(agent)] = agent
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
                self._thread.start()
            elif _poll(agent) < self._poll:
                self._changed.notify()  # it must look sooner than it planned

    def unwatch(self, agent: Watched) -> None:
        """Stop watching ``agent`` (its turn ended)."""
        with self._changed:
            self._watched.pop(id(agent), None)

    def _loop(self) -> None:
        while True:
            with self._changed:
                if not self._watched:
                    self._thread = None  # a later watch() starts a new thread
                    return
                self._poll = min(_poll(agent) for agent in self._watched.values())
                self._changed.wait(self._poll)
                agents = list(self._watched.values())
            for agent in agents:
                if agent.check_inactivity():
                    self.unwatch(agent)


def _poll(agent: Watched) -> float:
    return max(_MIN_POLL, min(_MAX_POLL, agent.inactivity_timeout / 4))


# One per process, on purpose: every agent's turn (of every worker in the
# process) is watched by the same thread, which the watchdog itself owns: it
# starts with the first watched turn and exits when none is left, so there is
# nothing to join at shutdown.
_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """This process's watchdog (a singleton: one thread watches every running turn).

    Module-level because :class:`~agent.AIAgent` is built without a worker to
    hand it one, and a thread per agent or per worker is what it avoids; it
    holds no state beyond the turns running now.
    """
    return _WATCHDOG
