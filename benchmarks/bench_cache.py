"""Benchmark the worker's agent cache against a bare OrderedDict LRU.

Run: ``.venv/bin/python benchmarks/bench_cache.py [--entries N] [--ops N]``.

Measures, in one process, with the cache full at ``--entries`` (10,000 by
default) agents:

1. a hit: ``checkout()`` of a cached session with per-message state, the
   ``with`` block entered and left (baseline: ``move_to_end`` + lookup);
2. an insert that pushes the cache over its cap, so one agent is evicted and
   handed to the background releaser (baseline: set item + ``popitem(last=False)``);
3. an idle sweep over every entry that finds nothing to evict (baseline: a
   loop over the values comparing timestamps).

Each operation is timed on its own (``perf_counter_ns``, garbage collector off
as in ``timeit``); the table shows median and p99 per operation, throughput
(operations over their summed time) and the median ratio to the baseline.
Figures are for reading, never for gating CI.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.cache import AgentCache  # noqa: E402

TTL = 3600.0
NOW = 1_000_000.0


class BenchAgent:
    """The smallest object satisfying the cache's agent protocol; releasing is free."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.client: object | None = object()
        self.last_activity_ts: float | None = NOW
        self.last_activity_desc = ""
        self.api_call_count = 0
        self.tool_progress_callback: Any = None
        self.step_callback: Any = None
        self.stream_delta_callback: Any = None
        self.status_callback: Any = None
        self.reasoning_config: Any = None
        self.max_iterations: Any = 90

    def release_clients(self) -> None:
        self.client = None

    def close(self) -> None:
        self.client = None

    def memory_estimate(self) -> int:
        return 0


def timed(op: Callable[[], object], ops: int) -> list[int]:
    """Nanoseconds of each of ``ops`` calls of ``op``."""
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(ops):
            start = time.perf_counter_ns()
            op()
            samples.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return samples


def summary(samples: list[int]) -> tuple[float, float, float]:
    """(median µs, p99 µs, ops/s)."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) / 1e3, p99 / 1e3, len(samples) / (sum(samples) / 1e9)


def cycle(keys: list[str]) -> Iterator[str]:
    while True:
        yield from keys


def bench_hits(entries: int, ops: int) -> tuple[list[int], list[int]]:
    keys = [f"session-{i}" for i in range(entries)]
    cache: AgentCache[BenchAgent] = AgentCache(max_size=entries, clock=lambda: NOW)
    for key in keys:
        cache.insert(key, BenchAgent(key), signature="sig")
    state = {"reasoning_config": {"effort": "medium"}, "max_iterations": 60}
    order = cycle(keys[:: max(1, entries // ops)] or keys)

    def hit() -> None:
        key = next(order)
        with cache.checkout(
            key, signature="sig", committed_turns=0, build=lambda: BenchAgent(key), turn_state=state
        ) as handle:
            assert handle.hit

    ours = timed(hit, ops)
    cache.shutdown()

    plain: OrderedDict[str, BenchAgent] = OrderedDict((k, BenchAgent(k)) for k in keys)
    base_order = cycle(keys[:: max(1, entries // ops)] or keys)

    def baseline_hit() -> None:
        key = next(base_order)
        plain.move_to_end(key)
        _ = plain[key]

    return ours, timed(baseline_hit, ops)


def bench_inserts(entries: int, ops: int) -> tuple[list[int], list[int]]:
    cache: AgentCache[BenchAgent] = AgentCache(max_size=entries, clock=lambda: NOW)
    for i in range(entries):
        cache.insert(f"session-{i}", BenchAgent(f"session-{i}"), signature="sig")
    pool = iter([BenchAgent(f"session-{i}") for i in range(entries, entries + ops)])

    def insert() -> None:
        agent = next(pool)
        cache.insert(agent.session_id, agent, signature="sig")

    ours = timed(insert, ops)
    assert len(cache) == entries
    cache.shutdown()

    plain: OrderedDict[str, BenchAgent] = OrderedDict(
        (f"session-{i}", BenchAgent(f"session-{i}")) for i in range(entries)
    )
    base_pool = iter([BenchAgent(f"session-{i}") for i in range(entries, entries + ops)])

    def baseline_insert() -> None:
        agent = next(base_pool)
        plain[agent.session_id] = agent
        if len(plain) > entries:
            plain.popitem(last=False)[1].release_clients()

    return ours, timed(baseline_insert, ops)


def bench_sweeps(entries: int, ops: int) -> tuple[list[int], list[int]]:
    cache: AgentCache[BenchAgent] = AgentCache(max_size=entries, idle_ttl=TTL, clock=lambda: NOW)
    for i in range(entries):
        cache.insert(f"session-{i}", BenchAgent(f"session-{i}"), signature="sig")

    def sweep() -> None:
        assert cache.sweep_idle() == 0

    ours = timed(sweep, ops)
    cache.shutdown()

    plain = OrderedDict((f"session-{i}", BenchAgent(f"session-{i}")) for i in range(entries))

    def baseline_sweep() -> None:
        victims = [
            key
            for key, agent in plain.items()
            if agent.last_activity_ts is not None and NOW - agent.last_activity_ts > TTL
        ]
        assert not victims

    return ours, timed(baseline_sweep, ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="cached agents (default 10000)")
    parser.add_argument("--ops", type=int, default=20_000, help="hits and inserts timed")
    parser.add_argument("--sweeps", type=int, default=200, help="sweeps timed")
    args = parser.parse_args()

    rows = [
        ("hit (checkout + exit)", *bench_hits(args.entries, args.ops)),
        (f"insert at cap {args.entries}", *bench_inserts(args.entries, args.ops)),
        (f"sweep over {args.entries}", *bench_sweeps(args.entries, args.sweeps)),
    ]
    print(
        f"agent cache vs OrderedDict baseline, {args.entries} entries, Python "
        f"{sys.version.split()[0]}"
    )
    header = (
        f"{'operation':<24} {'median µs':>10} {'p99 µs':>10} {'ops/s':>11} | "
        f"{'base med µs':>11} {'base p99 µs':>11} {'base ops/s':>11} | {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, ours, base in rows:
        med, p99, rate = summary(ours)
        bmed, bp99, brate = summary(base)
        print(
            f"{name:<24} {med:>10.2f} {p99:>10.2f} {rate:>11,.0f} | "
            f"{bmed:>11.2f} {bp99:>11.2f} {brate:>11,.0f} | {med / bmed:>5.1f}x"
        )


if __name__ == "__main__":
    main()
