"""Background release of evicted agents.

Releasing an agent closes HTTP clients and, for a hard close, kills processes
and deletes sandboxes: it can take seconds. The cache therefore never releases
on the caller's thread nor under its lock; it hands a :class:`Release` to a
:class:`ReleaseExecutor`, by default a :class:`Releaser`: a small elastic pool
of daemon threads, started on first use, that runs ``release_clients()`` (soft)
or ``close()`` (hard) and logs (never raises) a failing release.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from cluster.errors import ConfigError
from worker.cache.policy import EvictionCause

__all__ = ["Releasable", "Release", "ReleaseExecutor", "Releaser"]

logger = logging.getLogger("worker.cache")


class Releasable(Protocol):
    """The two ways an agent can be let go."""

    def release_clients(self) -> None:
        """Soft release: LLM clients and transcript; tool state survives."""
        ...

    def close(self) -> None:
        """Hard release: everything keyed by the session's task id."""
        ...


@dataclass(frozen=True, slots=True)
class Release:
    """One agent to let go.

    Attributes:
        session_id: the session the agent served (for logs).
        agent: the agent.
        hard: ``close()`` if true, else ``release_clients()``.
        cause: why the agent left the cache (for logs).
    """

    session_id: str
    agent: Releasable
    hard: bool
    cause: EvictionCause

    def run(self) -> None:
        """Release the agent on the current thread."""
        if self.hard:
            self.agent.close()
        else:
            self.agent.release_clients()


class ReleaseExecutor(Protocol):
    """Where the cache sends releases; must not run them on the submitting thread."""

    def submit(self, release: Release) -> None:
        """Queue one release; returns at once."""
        ...

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted release has finished; false on timeout."""
        ...

    def close(self, timeout: float | None = None) -> bool:
        """Finish queued releases and stop the threads; false on timeout."""
        ...


class Releaser:
    """Elastic pool of daemon threads running releases in submission order.

    Threads start on demand (up to ``max_threads``) and leave after
    ``keepalive`` idle seconds, so a cache that never evicts starts none, and a
    slow release delays only the releases queued behind it once every thread is
    busy. :meth:`close` drains the queue and joins the threads; a later
    :meth:`submit` starts threads again, so a turn ending after shutdown still
    gets its agent released.
    """

    def __init__(
        self, *, max_threads: int = 2, name: str = "agent-cache-releaser", keepalive: float = 5.0
    ) -> None:
        """Create an idle pool.

        Args:
            max_threads: most threads releasing at once (>= 1).
            name: thread name prefix.
            keepalive: seconds an idle thread waits for a release before it exits.

        Raises:
            ConfigError: ``max_threads`` < 1.
        """
        if max_threads < 1:
            raise ConfigError(f"Releaser max_threads must be >= 1, got {max_threads}")
        self._max_threads = max_threads
        self._name = name
        self._keepalive = keepalive
        lock = threading.Lock()
        # Two conditions on one lock: waking a wait_idle() caller must never
        # consume the notification meant for an idle worker thread.
        self._cond = threading.Condition(lock)
        self._done = threading.Condition(lock)
        self._queue: deque[Release] = deque()
        self._threads: set[threading.Thread] = set()
        self._idle_threads = 0
        self._unfinished = 0
        self._stopping = False
        self._spawned = 0

    def submit(self, release: Release) -> None:
        """Queue a release for a background thread; never blocks on the release."""
        with self._cond:
            self._queue.append(release)
            self._unfinished += 1
            if self._idle_threads == 0 and len(self._threads) < self._max_threads:
                self._spawned += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._spawned}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
            else:
                self._cond.notify()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted release has finished.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            False if releases were still running when the timeout expired.
        """
        with self._cond:
            return self._done.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Finish the queued releases, then stop and join the threads.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            False if a release or thread was still running at the timeout (the
            daemon threads then finish, or die with the process).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads)
        try:
            for thread in threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
            return not any(thread.is_alive() for thread in threads)
        finally:
            with self._cond:
                self._stopping = False

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                self._idle_threads += 1
                while not self._queue and not self._stopping:
                    if not self._cond.wait(self._keepalive):
                        break  # idle too long: the thread leaves (a later submit starts one)
                self._idle_threads -= 1
                if not self._queue:
                    self._threads.discard(me)
                    return
                release = self._queue.popleft()
            try:
                release.run()
            except Exception:
                logger.warning(
                    "%s release of session %s (cause: %s) failed",
                    "hard" if release.hard else "soft",
                    release.session_id,
                    release.cause.value,
                    exc_info=True,
                )
            finally:
                with self._cond:
                    self._unfinished -= 1
                    if self._unfinished == 0:
                        self._done.notify_all()
