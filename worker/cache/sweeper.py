"""A periodic background job on a daemon thread (the agent cache's idle sweeper).

The job runs every ``interval`` seconds until :meth:`Sweeper.stop`; a failing
run is logged and retried at the next interval, so one bad sweep never stops
the sweeping. Stopping wakes the thread at once (it waits on an
:class:`threading.Event`, not in ``time.sleep``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cluster.errors import ConfigError

__all__ = ["Sweeper"]

logger = logging.getLogger("worker.cache")


class Sweeper:
    """Run ``job()`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, job: Callable[[], object], *, interval: float, name: str) -> None:
        """Prepare (not start) the sweeper.

        Args:
            job: the work to repeat; its result is ignored.
            interval: seconds between the end of one run and the start of the next (> 0).
            name: the thread name, also used in logs.

        Raises:
            ConfigError: ``interval`` is not positive.
        """
        if interval <= 0:
            raise ConfigError(f"{name} interval must be > 0 seconds, got {interval}")
        self._job = job
        self._interval = interval
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        """Whether the thread is started and not stopped."""
        with self._lock:
            return self._thread is not None

    def start(self) -> None:
        """Start the thread; does nothing if it already runs."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name=self._name, daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread and join it.

        Args:
            timeout: seconds to wait for a run in progress; ``None`` waits for ever.

        Returns:
            False if the thread was still running at the timeout.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                self._job()
            except Exception:
                logger.exception("%s run failed; retrying in %ss", self._name, self._interval)
