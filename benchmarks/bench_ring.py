"""Benchmark the consistent-hash ring against a modulo baseline and uhashring.

Run: ``.venv/bin/python benchmarks/bench_ring.py [--sessions N] [--workers N]``.

Prints three tables for 10,000 session keys over 10 workers (by default):

1. lookup time, ns/op, median of repeats over all keys, all in one process;
2. share of sessions whose owner changes when an 11th worker joins (goal:
   at most 1/11 + 1%) or the 10th leaves;
3. max/mean sessions per worker, without and with the load bound (goal:
   at most 1.10 with the bound);
4. at ``--large-workers`` (1,000) workers: building the ring, one worker
   joining and one leaving, and a lookup, against the ring before it was
   edited in place (every point hashed and all pairs sorted at each change,
   kept here as :class:`RebuildRing`); goal: a change under 10 ms and a
   lookup under 2 us, with the same placements
   (``tests/unit/cluster/test_ring_reference.py`` proves the placements).

uhashring is measured when it is importable (``pip install uhashring``); it is
not a project dependency. Figures are for reading, never for gating CI.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.ring import HashRing, ring_point  # noqa: E402

try:
    from uhashring import HashRing as UHashRing
except ImportError:  # optional comparison only
    UHashRing = None

REPEATS = 7
BOUNDED_FACTORS = (1.25, 1.10, 1.05)


def median_ns_per_op(lookup: Callable[[str], object], keys: list[str]) -> float:
    """Median over REPEATS of the mean time of ``lookup`` over all ``keys``."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for key in keys:
            lookup(key)
        samples.append((time.perf_counter_ns() - start) / len(keys))
    return statistics.median(samples)


def moved_share(before: Mapping[str, str], after: Mapping[str, str]) -> float:
    return sum(before[key] != after[key] for key in before) / len(before)


def max_over_mean(assignment: Mapping[str, str], workers: list[str]) -> float:
    counts = Counter(assignment.values())
    return max(counts[w] for w in workers) / (len(assignment) / len(workers))


def modulo_owner(workers: list[str]) -> Callable[[str], str]:
    return lambda key: workers[ring_point(key) % len(workers)]


def bounded_owner(keys: list[str], factor: float) -> Callable[[list[str]], Callable[[str], str]]:
    def owner_of(workers: list[str]) -> Callable[[str], str]:
        return HashRing(workers).assign_bounded(keys, load_factor=factor).__getitem__

    return owner_of


def uhash_owner(workers: list[str]) -> Callable[[str], str] | None:
    if UHashRing is None:
        return None
    ring = UHashRing(nodes=workers, vnodes=160)
    return lambda key: str(ring.get_node(key))


def print_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def bench_lookup(keys: list[str], workers: list[str]) -> None:
    ring = HashRing(workers)
    loads = dict.fromkeys(workers, len(keys) // len(workers))
    cases: list[tuple[str, Callable[[str], object]]] = [
        ("python hash() % n  (unstable, floor)", lambda k: workers[hash(k) % len(workers)]),
        ("modulo blake2b % n (baseline)", modulo_owner(workers)),
        ("HashRing.owner", ring.owner),
        ("HashRing.preference_list(k, 2)", lambda k: ring.preference_list(k, 2)),
        ("HashRing.owner_bounded (c=1.25)", lambda k: ring.owner_bounded(k, loads)),
    ]
    uhash = uhash_owner(workers)
    if uhash is not None:
        cases.append(("uhashring.get_node", uhash))
    rows: list[tuple[str, ...]] = [
        (name, f"{median_ns_per_op(fn, keys):,.0f}") for name, fn in cases
    ]

    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        ring.assign_bounded(keys, load_factor=1.10)
        samples.append(time.perf_counter_ns() - start)
    rows.append(
        (
            f"HashRing.assign_bounded, all {len(keys):,} keys (c=1.10)",
            f"{statistics.median(samples) / len(keys):,.0f}",
        )
    )
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        HashRing(workers)
        samples.append(time.perf_counter_ns() - start)
    rows.append(
        (f"build HashRing({len(workers)} workers), total ns", f"{statistics.median(samples):,.0f}")
    )
    print_table(
        f"Lookup, {len(keys):,} keys, {len(workers)} workers, 160 vnodes, median of {REPEATS}",
        ("operation", "ns/op"),
        rows,
    )


def bench_movement(keys: list[str], workers: list[str]) -> None:
    joined = [*workers, f"worker-{len(workers)}"]
    left = workers[:-1]
    goal = 1 / len(joined) + 0.01
    rows: list[tuple[str, ...]] = []

    def add(name: str, owner_of: Callable[[list[str]], Callable[[str], str]]) -> None:
        base_owner, grown_owner, shrunk_owner = owner_of(workers), owner_of(joined), owner_of(left)
        base = {k: base_owner(k) for k in keys}
        grown = {k: grown_owner(k) for k in keys}
        shrunk = {k: shrunk_owner(k) for k in keys}
        only_to_new = all(grown[k] in (base[k], joined[-1]) for k in keys)
        only_from_gone = all(shrunk[k] == base[k] for k in keys if base[k] != workers[-1])
        rows.append(
            (
                name,
                f"{moved_share(base, grown):.2%}",
                "yes" if only_to_new else "no",
                f"{moved_share(base, shrunk):.2%}",
                "yes" if only_from_gone else "no",
            )
        )

    add("modulo blake2b % n", modulo_owner)
    add("HashRing.owner", lambda ws: HashRing(ws).owner)
    if UHashRing is not None:
        add("uhashring", lambda ws: uhash_owner(ws) or modulo_owner(ws))
    for factor in BOUNDED_FACTORS:
        add(f"HashRing.assign_bounded c={factor:.2f}", bounded_owner(keys, factor))
    print_table(
        f"Sessions moved, {len(keys):,} keys (goal on join: <= 1/{len(joined)} + 1% = {goal:.2%})",
        (
            "placement",
            f"{len(workers)}->{len(joined)} moved",
            "only to new",
            f"{len(workers)}->{len(left)} moved",
            "only from gone",
        ),
        rows,
    )


class RebuildRing:
    """The ring before incremental edits (its code, verbatim in effect): every point hashed
    at a build; a change re-sorts all ``(point, node)`` pairs into new tuples."""

    def __init__(self, nodes: list[str], vnodes: int = 160) -> None:
        pairs = [(ring_point(f"{node}#{i}"), node) for node in nodes for i in range(vnodes)]
        self._set(nodes, vnodes, sorted(pairs))

    def _set(self, nodes: list[str], vnodes: int, ring: list[tuple[int, str]]) -> None:
        self.points = tuple(point for point, _ in ring)
        self.owners = tuple(node for _, node in ring)
        self.nodes, self.vnodes = nodes, vnodes

    def with_node(self, node: str) -> RebuildRing:
        ring = list(zip(self.points, self.owners, strict=True))
        ring.extend((ring_point(f"{node}#{i}"), node) for i in range(self.vnodes))
        ring.sort()
        new = RebuildRing([], self.vnodes)
        new._set([*self.nodes, node], self.vnodes, ring)
        return new

    def without_node(self, node: str) -> RebuildRing:
        ring = [pair for pair in zip(self.points, self.owners, strict=True) if pair[1] != node]
        new = RebuildRing([], self.vnodes)
        new._set([n for n in self.nodes if n != node], self.vnodes, ring)
        return new

    def owner(self, key: str) -> str:
        index = bisect.bisect_left(self.points, ring_point(key))
        return self.owners[index if index < len(self.points) else 0]


def median_s(action: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_large(keys: list[str], size: int) -> None:
    workers = [f"worker-{i}" for i in range(size)]
    old, new = RebuildRing(workers), HashRing(workers)
    cases = (
        ("build", lambda: RebuildRing(workers), lambda: HashRing(workers), 3),
        ("one worker joins", lambda: old.with_node("joiner"), lambda: new.with_node("joiner"), 3),
        ("one worker leaves", lambda: old.without_node("worker-7"),
         lambda: new.without_node("worker-7"), 3),
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for name, before, after, repeats in cases:
        b, a = median_s(before, repeats), median_s(after, max(repeats, 7))
        rows.append((name, f"{b * 1e3:,.2f} ms", f"{a * 1e3:,.3f} ms", f"{a / b:.4f}x"))
    b, a = median_ns_per_op(old.owner, keys), median_ns_per_op(new.owner, keys)
    rows.append(("lookup (owner)", f"{b / 1e3:.2f} us", f"{a / 1e3:.2f} us", f"{a / b:.2f}x"))
    same = sum(old.owner(key) == new.owner(key) for key in keys)
    print_table(
        f"{size:,} workers x 160 vnodes: rebuild-and-sort ring (before) vs HashRing (after); "
        f"goal: a change < 10 ms, lookup < 2 us; same owner for {same:,}/{len(keys):,} keys",
        ("operation", "before", "after", "after/before"),
        rows,
    )


def bench_balance(keys: list[str], workers: list[str]) -> None:
    rows: list[tuple[str, ...]] = []
    modulo = modulo_owner(workers)
    rows.append(
        (
            "modulo blake2b % n",
            "",
            f"{max_over_mean({k: modulo(k) for k in keys}, workers):.3f}",
        )
    )
    for vnodes in (40, 160, 640):
        ring = HashRing(workers, vnodes=vnodes)
        rows.append(
            (
                f"HashRing.owner vnodes={vnodes}",
                "",
                f"{max_over_mean({k: ring.owner(k) for k in keys}, workers):.3f}",
            )
        )
    uhash = uhash_owner(workers)
    if uhash is not None:
        rows.append(
            (
                "uhashring vnodes=160",
                "",
                f"{max_over_mean({k: uhash(k) for k in keys}, workers):.3f}",
            )
        )
    ring = HashRing(workers)
    for factor in BOUNDED_FACTORS:
        rows.append(
            (
                "HashRing.assign_bounded",
                f"{factor:.2f}",
                f"{max_over_mean(ring.assign_bounded(keys, load_factor=factor), workers):.3f}",
            )
        )
    # Online placement, one key at a time against live loads, as the coordinator does it.
    loads: Counter[str] = Counter()
    online: dict[str, str] = {}
    for key in keys:
        online[key] = ring.owner_bounded(key, loads, load_factor=1.10)
        loads[online[key]] += 1
    rows.append(("HashRing.owner_bounded online", "1.10", f"{max_over_mean(online, workers):.3f}"))
    print_table(
        f"Balance, {len(keys):,} keys over {len(workers)} workers (goal with bound: <= 1.10)",
        ("placement", "c", "max/mean"),
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--large-workers", type=int, default=1_000)
    args = parser.parse_args()
    keys = [f"session:{i}" for i in range(args.sessions)]
    workers = [f"worker-{i}" for i in range(args.workers)]
    print(
        f"Python {sys.version.split()[0]}; uhashring {'present' if UHashRing else 'not installed'}"
    )
    bench_lookup(keys, workers)
    bench_movement(keys, workers)
    bench_balance(keys, workers)
    bench_large(keys, args.large_workers)


if __name__ == "__main__":
    main()
