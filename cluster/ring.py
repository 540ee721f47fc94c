"""Consistent hashing ring that maps session keys to workers.

The coordinator builds a :class:`HashRing` over the live, non-draining workers
and asks it who owns a session key. Every worker gets ``vnodes`` points on a
64-bit circle; a key belongs to the worker of the first point at or after the
key's own point, wrapping at the top. Adding a worker to ``n`` therefore moves
only the keys that now land on the newcomer's points (about ``1/(n+1)`` of
them), and removing a worker moves only the keys it owned.

Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
Bounded Loads", SODA 2018): when placing a key while ``total`` keys are
already placed on ``n`` workers, no worker may hold more than
``capacity = ceil(c * (total + 1) / n)`` keys; the key walks clockwise past
full workers to the first one under capacity. :meth:`HashRing.owner_bounded`
places one key given the current loads, :meth:`HashRing.assign_bounded`
computes a whole balanced assignment. The load factor ``c`` bounds max/mean
load up to rounding to whole keys: no worker ends above ``ceil(c * m / n)``
of ``m`` keys, so ``c = 1.10`` gives max/mean <= 1.10 whenever ``1.1 * m / n``
is whole (10,000 keys over 10 workers: at most 1,100 each).

Everything here is pure and deterministic across processes and hosts: points
come from BLAKE2b (8-byte digest, stdlib) of UTF-8 text, never from Python's
salted ``hash()``; there is no I/O, no clock and no thread. A ring is
immutable; :meth:`HashRing.with_node` and :meth:`HashRing.without_node` return
new rings, so a routing table can be swapped atomically by assignment.

Why our own ring and not uhashring 2.5 (the common library). Figures from
``benchmarks/bench_ring.py`` on CPython 3.11.7 (a shared 2-core box, so take
the times as ratios): 10 workers, 160 vnodes, 10,000 session keys, lookup
time the median of 7 passes over all keys, all measured in one process::

    lookup, ns/op        modulo (blake2b % n) 610 | HashRing.owner 827
                         | uhashring.get_node 1,125 | hash() % n 71 (unstable)
    moved, 10 -> 11      modulo 90.87% | HashRing 8.89%, all to the newcomer
                         | uhashring 9.77%          (goal <= 1/11 + 1% = 10.09%)
    moved, 10 -> 9       modulo 90.23% | HashRing 10.42%, only the leaver's keys
    max/mean load        HashRing 1.101 (vnodes 40: 1.311, 640: 1.099)
                         | uhashring 1.075 | modulo 1.079
    max/mean, bounded    assign_bounded c=1.25: 1.103, c=1.10: 1.083,
                         c=1.05: 1.047; owner_bounded online, c=1.10: 1.087
    moved, bounded       10 -> 11: c=1.25 9.03%, c=1.10 9.76%, c=1.05 11.58%
                         (the price of the bound: spills cascade clockwise)
    assign_bounded       2,331 ns per key (10,000 keys in 23 ms, c=1.10)

The ring costs ~220 ns over the bare hash (the bisect), which is noise next
to the Redis round trip every routed message makes anyway. uhashring is the
same algorithm, so it moves and balances keys alike (its 1.075 vs our 1.101
is the luck of which points these worker names get), but it is 1.4x slower
per lookup (md5, hexdigest, int parse, dict lookups), mutable (a membership
change edits the ring under concurrent readers), lets the last writer win a
point collision (two rings built in different orders may then disagree),
ships no type information, and has no bounded-load variant, which is the
part that needs care (exact capacity arithmetic, a deterministic placement
order). Writing it costs one dependency-free module, so we write it.
BLAKE2b is the fastest stable hash in the stdlib here (~440 ns vs md5 ~530,
sha1 ~830 per key); xxhash would save a few hundred ns per lookup at the
price of a C-extension dependency, which routing does not need.

At 1,000 workers (160,000 points) a ring is edited, not rebuilt: a join
inserts the newcomer's points into copies of the sorted arrays (``array('Q')``
points, a list of owners), a leave cuts them out, each worker's points are
hashed once per process, and an index of up to 4,096 arcs narrows each lookup's
bisection. ``benchmarks/bench_ring.py`` (shared 2-core box under load, medians):
a join 4 ms and a leave 6 ms against 83 and 109 ms for the re-sorting ring
(goal < 10 ms), a lookup 1.37 us against 2.76 us (goal < 2 us), a build
91 ms against 388 ms; ``tests/unit/cluster/test_ring_reference.py`` checks
every placement against the re-sorting algorithm.

Example:
    >>> ring = HashRing(["w1", "w2", "w3"])
    >>> ring.owner("session:42") in {"w1", "w2", "w3"}
    True
    >>> ring.without_node("w9") is ring
    True
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping
from fractions import Fraction

from cluster.errors import ConfigError, NoLiveWorkers

__all__ = [
    "DEFAULT_LOAD_FACTOR",
    "DEFAULT_VNODES",
    "HashRing",
    "bounded_capacity",
    "ring_point",
]

DEFAULT_VNODES = 160
"""Points per worker: with 160, the busiest of 10 workers holds ~1.10x the mean (40 gives ~1.3x)."""

_MAX_BUCKET_BITS = 12
_blake2b = hashlib.blake2b

DEFAULT_LOAD_FACTOR = 1.25
"""The ``c`` of bounded loads: no worker above 1.25x the mean (the paper's usual pick)."""


def ring_point(text: str) -> int:
    """Return the stable 64-bit position of ``text`` on the ring.

    BLAKE2b with an 8-byte digest: the same on every host and Python process
    (unlike ``hash()``, which is salted per process), and in the stdlib.
    """
    # surrogatepass: a key decoded from JSON may hold a lone surrogate; it still needs a home.
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def bounded_capacity(
    total: int, workers: int, load_factor: float | Fraction = DEFAULT_LOAD_FACTOR
) -> int:
    """Return how many keys one worker may hold when the ``total + 1``-th key is placed.

    ``ceil(c * (total + 1) / workers)``, computed exactly: the load factor is
    read as the decimal it was written as (1.1 is 11/10, not the binary float
    just above it), so ``c = 1.10`` over 10,000 keys and 10 workers gives a
    capacity of exactly 1,100.

    Raises:
        ConfigError: ``load_factor`` is below 1 (some key would find no room)
            or ``workers`` is not positive.
    """
    factor = _exact_load_factor(load_factor)
    if workers < 1:
        raise ConfigError(f"bounded capacity needs at least one worker, got {workers}")
    return -(-(factor.numerator * (total + 1)) // (factor.denominator * workers))


@functools.lru_cache(maxsize=32)  # a handful of distinct factors; parsing one costs ~2 us
def _exact_load_factor(load_factor: float | Fraction) -> Fraction:
    # repr() of a float is the shortest decimal that round-trips, i.e. what was typed.
    try:
        factor = (
            load_factor if isinstance(load_factor, Fraction) else Fraction(repr(float(load_factor)))
        )
    except (TypeError, ValueError, OverflowError):  # None, "abc", nan, inf
        factor = Fraction(0)
    if factor < 1:
        raise ConfigError(
            "load_factor must be a number >= 1 (max/mean load bound, e.g. 1.25), got "
            f"{load_factor!r}"
        )
    return factor


class HashRing:
    """An immutable consistent-hash ring of worker ids with virtual nodes.

    Args:
        nodes: worker ids (non-empty strings); duplicates count once and the
            order does not matter: rings built from the same set are equal and
            route every key the same way.
        vnodes: points per worker on the ring. More points balance better and
            cost memory and build time linearly; lookups are O(log(n*vnodes)).

    Raises:
        ConfigError: ``vnodes`` is not a positive integer.
        ValueError: a worker id is not a non-empty string.
    """

    __slots__ = ("_buckets", "_nodes", "_owners", "_points", "_shift", "_vnodes")

    _buckets: list[int]
    _shift: int
    _nodes: frozenset[str]
    _owners: list[str]
    _points: array[int]
    _vnodes: int

    def __init__(self, nodes: Iterable[str] = (), *, vnodes: int = DEFAULT_VNODES) -> None:
        if isinstance(vnodes, bool) or not isinstance(vnodes, int) or vnodes < 1:
            raise ConfigError(
                f"vnodes must be a positive integer (default {DEFAULT_VNODES}), got {vnodes!r}"
            )
        node_set = frozenset(nodes)
        for node in node_set:
            _check_node_id(node)
        # Points of the nodes in id order, then a stable sort by point: a 64-bit
        # collision is broken by node id, so the ring never depends on the order
        # workers were added in (the order with_node keeps too).
        owners: list[str] = []
        points: list[int] = []
        for node in sorted(node_set):
            owners.extend([node] * vnodes)
            points.extend(_node_points(node, vnodes))
        order = sorted(range(len(points)), key=points.__getitem__)
        self._nodes = node_set
        self._vnodes = vnodes
        self._points = array("Q", [points[i] for i in order])
        self._owners = [owners[i] for i in order]
        self._shift, self._buckets = _bucket_starts(self._points)

    @classmethod
    def _from_arrays(
        cls, nodes: frozenset[str], vnodes: int, points: array[int], owners: list[str]
    ) -> HashRing:
        new = cls.__new__(cls)
        new._nodes = nodes
        new._vnodes = vnodes
        new._points = points
        new._owners = owners
        new._shift, new._buckets = _bucket_starts(points)
        return new

    # -- membership ---------------------------------------------------------

    @property
    def nodes(self) -> frozenset[str]:
        """The worker ids on the ring."""
        return self._nodes

    @property
    def vnodes(self) -> int:
        """Points per worker."""
        return self._vnodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._nodes))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashRing):
            return NotImplemented
        return self._vnodes == other._vnodes and self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash((self._vnodes, self._nodes))

    def __repr__(self) -> str:
        return f"HashRing({sorted(self._nodes)!r}, vnodes={self._vnodes})"

    def with_node(self, node: str) -> HashRing:
        """Return a ring that also holds ``node`` (this ring if it already does).

        Inserts the newcomer's points into copies of the sorted arrays (one
        slice per point, no re-sort): about 1 ms at 1,000 workers.

        Raises:
            ValueError: ``node`` is not a non-empty string.
        """
        _check_node_id(node)
        if node in self._nodes:
            return self
        old_points, old_owners = self._points, self._owners
        points: array[int] = array("Q")
        owners: list[str] = []
        taken = 0
        for point in _node_points(node, self._vnodes):
            index = self._insertion_index(point, node, taken)
            points.extend(old_points[taken:index])
            owners.extend(old_owners[taken:index])
            points.append(point)
            owners.append(node)
            taken = index
        points.extend(old_points[taken:])
        owners.extend(old_owners[taken:])
        return self._from_arrays(self._nodes | {node}, self._vnodes, points, owners)

    def without_node(self, node: str) -> HashRing:
        """Return a ring without ``node`` (this ring if it does not hold it).

        Idempotent on purpose: a worker may be reported dead by several
        membership events, and removing it twice is not an error. Cuts the
        leaver's points out of copies of the arrays, found by bisection.
        """
        if node not in self._nodes:
            return self
        old_points, old_owners = self._points, self._owners
        points: array[int] = array("Q")
        owners: list[str] = []
        taken = 0
        for point in _node_points(node, self._vnodes):
            index = bisect.bisect_left(old_points, point, taken)
            while old_owners[index] != node:  # past a collision with a smaller node id
                index += 1
            points.extend(old_points[taken:index])
            owners.extend(old_owners[taken:index])
            taken = index + 1
        points.extend(old_points[taken:])
        owners.extend(old_owners[taken:])
        return self._from_arrays(self._nodes - {node}, self._vnodes, points, owners)

    def _insertion_index(self, point: int, node: str, lo: int) -> int:
        """Where ``(point, node)`` goes in the sorted ``(point, owner)`` order, from ``lo``."""
        points, owners = self._points, self._owners
        index = bisect.bisect_left(points, point, lo)
        while index < len(points) and points[index] == point and owners[index] < node:
            index += 1
        return index

    # -- lookups ------------------------------------------------------------

    def owner(self, key: str) -> str:
        """Return the worker that owns ``key``.

        Raises:
            NoLiveWorkers: the ring is empty.
        """
        points = self._points
        if not points:
            raise self._empty(key)
        # ring_point inlined (this is the per-message path): ~0.1 us of call overhead.
        point = int.from_bytes(
            _blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
        )
        bucket = point >> self._shift
        buckets = self._buckets
        index = bisect.bisect_left(points, point, buckets[bucket], buckets[bucket + 1])
        return self._owners[index if index < len(points) else 0]

    def owner_outside(self, key: str, exclude: Collection[str]) -> str | None:
        """Return the first worker clockwise from ``key`` that is not in ``exclude``.

        What a ring without the excluded workers would answer, found by walking
        only as far as needed (a walk for the whole preference list visits
        every point of a large ring). ``None`` when every worker is excluded.

        Raises:
            NoLiveWorkers: the ring is empty.
        """
        if not self._points:
            raise self._empty(key)
        if not exclude:
            return self.owner(key)
        if self._nodes <= set(exclude):
            return None
        for node in self._walk(ring_point(key)):
            if node not in exclude:
                return node
        return None  # unreachable: some node on the ring is not excluded

    def preference_list(self, key: str, n: int) -> list[str]:
        """Return up to ``n`` distinct workers for ``key``, owner first, then clockwise.

        The second entry is who would own ``key`` if the owner left, and so on,
        which is where a draining worker hands its sessions over. Fewer than
        ``n`` entries come back when the ring holds fewer workers.

        Raises:
            ValueError: ``n`` is negative.
            NoLiveWorkers: the ring is empty.
        """
        if n < 0:
            raise ValueError(f"preference_list needs n >= 0, got {n}")
        if not self._points:
            raise self._empty(key)
        wanted = min(n, len(self._nodes))
        found: list[str] = []
        seen: set[str] = set()
        for node in self._walk(ring_point(key)):
            if len(found) == wanted:
                break
            if node not in seen:
                seen.add(node)
                found.append(node)
        return found

    def owner_bounded(
        self,
        key: str,
        loads: Mapping[str, int],
        *,
        load_factor: float | Fraction = DEFAULT_LOAD_FACTOR,
    ) -> str:
        """Return the owner of a new ``key`` under bounded loads.

        ``loads`` maps workers to the number of keys they hold now; workers
        missing from it hold none, and entries for workers not on the ring
        (departed ones) are ignored. The key goes to the first worker
        clockwise from its point whose load is below
        ``bounded_capacity(total, len(ring), load_factor)``.

        Raises:
            NoLiveWorkers: the ring is empty.
            ConfigError: ``load_factor`` is below 1.
        """
        if not self._points:
            raise self._empty(key)
        total = sum(count for node, count in loads.items() if node in self._nodes)
        capacity = bounded_capacity(total, len(self._nodes), load_factor)
        return self._first_under(ring_point(key), loads, capacity)

    def assign_bounded(
        self,
        keys: Iterable[str],
        *,
        load_factor: float | Fraction = DEFAULT_LOAD_FACTOR,
    ) -> dict[str, str]:
        """Place all ``keys``, starting from no load, under bounded loads.

        Keys are placed in sorted order, so the result depends only on the set
        of keys (not on the order a Redis scan returned them in); duplicates
        count once. No worker ends with more than
        ``ceil(load_factor * len(keys) / len(ring))`` keys.

        Returns:
            Each key mapped to its worker.

        Raises:
            NoLiveWorkers: the ring is empty and ``keys`` is not.
            ConfigError: ``load_factor`` is below 1.
        """
        factor = _exact_load_factor(load_factor)
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        if not self._points:
            raise self._empty(ordered[0])
        workers = len(self._nodes)
        loads = dict.fromkeys(self._nodes, 0)
        assignment: dict[str, str] = {}
        for total, key in enumerate(ordered):
            node = self._first_under(
                ring_point(key), loads, bounded_capacity(total, workers, factor)
            )
            loads[node] += 1
            assignment[key] = node
        return assignment

    # -- internals ----------------------------------------------------------

    def _walk(self, point: int) -> Iterator[str]:
        """Yield the owner of every vnode once, clockwise from ``point``."""
        owners = self._owners
        size = len(owners)
        start = bisect.bisect_left(self._points, point)
        # Index arithmetic rather than slicing: callers usually stop after one
        # or two steps, and a slice would copy the whole ring every lookup.
        for offset in range(start, start + size):
            yield owners[offset % size]

    def _first_under(self, point: int, loads: Mapping[str, int], capacity: int) -> str:
        for node in self._walk(point):
            if loads.get(node, 0) < capacity:
                return node
        # Unreachable: capacity * workers >= load_factor * (total + 1) > total,
        # the sum of the loads on the ring, so some worker is under capacity.
        raise AssertionError(f"no worker under capacity {capacity}; loads={dict(loads)!r}")

    def _empty(self, key: str) -> NoLiveWorkers:
        return NoLiveWorkers(
            f"no live, non-draining worker to own session key {key!r}: the ring is empty; "
            "start a worker (or undrain one) and retry"
        )


def _check_node_id(node: object) -> None:
    if not isinstance(node, str) or not node:
        raise ValueError(f"worker ids must be non-empty strings, got {node!r}")


def _bucket_starts(points: array[int]) -> tuple[int, list[int]]:
    """Slice the circle into ``2**bits`` equal arcs; return the shift that maps a point to
    its arc and where each arc starts in ``points``.

    A lookup bisects only its own arc (~40 points at 1,000 workers instead of
    160,000): half the lookup time, for ~2 ms per membership change. About 16
    points per arc, at most 4,096 arcs, so a small ring pays next to nothing.
    """
    bits = min(_MAX_BUCKET_BITS, (len(points) // 16).bit_length())
    shift = 64 - bits
    starts = [bisect.bisect_left(points, arc << shift) for arc in range(1 << bits)]
    starts.append(len(points))
    return shift, starts


@functools.lru_cache(maxsize=4096)
def _node_points(node: str, vnodes: int) -> tuple[int, ...]:
    """The sorted points of one worker, hashed once per process.

    A gateway rebuilds or edits its ring at every membership change; hashing a
    worker's 160 points costs ~100 us, so the hashes of up to 4,096 workers
    (~5 MB) are kept.
    """
    # "node#i" is unambiguous because i is all digits after the last '#'.
    return tuple(sorted(ring_point(f"{node}#{i}") for i in range(vnodes)))
