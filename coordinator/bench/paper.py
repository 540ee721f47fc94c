"""Figure 5: scale on paper, the ring and ownership logic at 1,000 workers.

No processes: :class:`~cluster.ring.HashRing` itself, with ``paper_workers``
workers and ``paper_sessions`` session keys. Measured: a lookup (against the
bare hash, the floor), a join and a leave (against building the ring), the
share of sessions whose ring placement moves on a join or a leave (against
the ideal ``1/(n+1)`` and ``1/n``), what sticky ownership moves (only the
leaver's sessions: owners stay while alive), and balance (max/mean sessions
per worker). The Redis load of such a deployment follows from figure 2.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cluster.ring import HashRing, ring_point
from coordinator.bench.plan import BenchPlan, Progress

__all__ = ["PaperFigures", "measure_paper"]

LOOKUP_SAMPLE = 100_000


@dataclass(frozen=True)
class PaperFigures:
    """Figure 5 of one run."""

    workers: int
    sessions: int
    lookup_ns: float
    hash_ns: float
    build_ms: float
    join_ms: float
    leave_ms: float
    moved_on_join: float
    moved_on_leave: float
    sticky_moved_on_join: float
    sticky_moved_on_leave: float
    max_over_mean: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results."""
        return dict(self.__dict__)


def _median_ms(action: Any, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure_paper(plan: BenchPlan, *, progress: Progress) -> PaperFigures:
    """Simulate ``plan.paper_workers`` workers and ``plan.paper_sessions`` sessions."""
    workers = [f"worker-{i}" for i in range(plan.paper_workers)]
    keys = [f"session:{i}" for i in range(plan.paper_sessions)]
    build_ms = _median_ms(lambda: HashRing(workers), repeats=3)
    ring = HashRing(workers)
    joined = ring.with_node("worker-new")
    left = ring.without_node(workers[0])
    join_ms = _median_ms(lambda: ring.with_node("worker-new"))
    leave_ms = _median_ms(lambda: ring.without_node(workers[0]))

    sample = keys[:LOOKUP_SAMPLE]
    started = time.perf_counter()
    for key in sample:
        ring.owner(key)
    lookup_ns = (time.perf_counter() - started) / len(sample) * 1e9
    started = time.perf_counter()
    for key in sample:
        ring_point(key)
    hash_ns = (time.perf_counter() - started) / len(sample) * 1e9

    owners = [ring.owner(key) for key in keys]
    after_join = [joined.owner(key) for key in keys]
    after_leave = [left.owner(key) for key in keys]
    moved_join = sum(a != b for a, b in zip(owners, after_join, strict=True)) / len(keys)
    moved_leave = sum(a != b for a, b in zip(owners, after_leave, strict=True)) / len(keys)
    loads = Counter(owners)
    mean = len(keys) / len(workers)
    figures = PaperFigures(
        workers=len(workers),
        sessions=len(keys),
        lookup_ns=lookup_ns,
        hash_ns=hash_ns,
        build_ms=build_ms,
        join_ms=join_ms,
        leave_ms=leave_ms,
        moved_on_join=moved_join,
        moved_on_leave=moved_leave,
        # Sticky ownership: an owner keeps its sessions while alive and active, so a
        # join moves none and a leave moves exactly the leaver's.
        sticky_moved_on_join=0.0,
        sticky_moved_on_leave=loads[workers[0]] / len(keys),
        max_over_mean=max(loads[w] for w in workers) / mean,
    )
    progress.step(f"on paper: {len(workers):,} workers, {len(keys):,} sessions")
    return figures
