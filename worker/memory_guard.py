"""The worker's memory guard: read the RSS, have the agent cache shed agents near the budget.

``agent_cache_memory`` (:mod:`cluster.memory_budget`) is resolved once at
start: an absolute size, or a share of the memory the process may use, read
from its cgroup v2 ``memory.max`` (the container's limit) or, without one,
the host's RAM. A thread then reads the RSS (``/proc/self/statm``) every
:data:`CHECK_INTERVAL` seconds and hands it to
:meth:`worker.cache.AgentCache.shed_for_memory`, whose pure policy picks
the least recently used idle agents to soft-release. After a shed it asks
the C allocator to give freed pages back to the system (glibc
``malloc_trim``), so the next reading sees what the release freed: CPython
returns freed arenas itself, but a transcript's large strings live in
malloc's heap, which otherwise keeps them resident.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from cluster.glibc_malloc import return_free_memory
from cluster.memory_budget import MemoryBudget

__all__ = ["CHECK_INTERVAL", "MemoryGuard", "memory_limit", "read_rss", "resolve_budget"]

log = logging.getLogger("worker.memory")

CHECK_INTERVAL = 0.25
"""Seconds between two RSS readings (one small /proc read each)."""

_PAGE = os.sysconf("SC_PAGE_SIZE")


def read_rss() -> int:
    """The process' resident set size in bytes (0 where /proc is not available)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _cgroup_limit(proc_root: Path, cgroup_root: Path) -> int | None:
    """The cgroup v2 ``memory.max`` of this process' cgroup, ``None`` when unlimited or absent."""
    try:
        lines = (proc_root / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            group = line[3:].strip().lstrip("/")
            for directory in (cgroup_root / group, cgroup_root):
                try:
                    raw = (directory / "memory.max").read_text().strip()
                except OSError:
                    continue
                return int(raw) if raw.isdigit() else None
    return None


def memory_limit(
    *, proc_root: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> tuple[int, str]:
    """What the process may use: ``(bytes, where it comes from)``; cgroup v2 limit, else RAM."""
    limit = _cgroup_limit(proc_root, cgroup_root)
    if limit is not None:
        return limit, "cgroup memory.max"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "total RAM"


def resolve_budget(
    budget: MemoryBudget, limit: Callable[[], tuple[int, str]] = memory_limit
) -> tuple[int, str]:
    """The budget in bytes and how it was reached (for the start-up log line)."""
    if budget.share is None:
        return budget.resolve(0), str(budget)
    limit_bytes, source = limit()
    return budget.resolve(limit_bytes), f"{budget} ({source}: {limit_bytes} bytes)"


class MemoryGuard:
    """Keeps the worker's RSS under its budget by shedding cached agents (a thread)."""

    def __init__(
        self,
        *,
        budget_bytes: int,
        source: str,
        shed: Callable[[int, int], int],
        rss: Callable[[], int] = read_rss,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        """Prepare (not start) the guard.

        Args:
            budget_bytes: The budget (:func:`resolve_budget`).
            source: How it was reached, for the log.
            shed: ``AgentCache.shed_for_memory(rss, budget)``; returns agents released.
            rss: Reads the process' RSS in bytes.
            interval: Seconds between readings.
        """
        self.budget_bytes = budget_bytes
        self.source = source
        self._shed = shed
        self._rss = rss
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shed_total = 0

    def check(self) -> int:
        """One reading and shed; returns how many agents were released."""
        released = self._shed(self._rss(), self.budget_bytes)
        self.shed_total += released
        return released

    def start(self) -> None:
        """Check every ``interval`` seconds on a daemon thread."""
        log.info("agent cache memory budget: %d bytes (%s)", self.budget_bytes, self.source)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="memory-guard", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop checking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        shed = False
        while not self._stop.wait(self._interval):
            try:
                if shed:  # the releases of the last check have run by now (or are running)
                    return_free_memory()
                shed = self.check() > 0
            except Exception:
                log.exception("memory guard check failed; checking again in %gs", self._interval)
