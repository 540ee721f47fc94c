"""The incremental ring places every key exactly where the original rebuild-and-sort ring did.

:class:`ReferenceRing` is the algorithm ``cluster.ring`` shipped before rings
were edited in place (every point hashed, ``(point, node)`` pairs sorted, a
bisection per lookup), kept verbatim as the reference: the faster ring must
not move a single session.
"""

from __future__ import annotations

import bisect
import random

import pytest

from cluster.errors import NoLiveWorkers
from cluster.ring import HashRing, ring_point


class ReferenceRing:
    """The original ring: sorted ``(point, node)`` pairs, rebuilt for every membership."""

    def __init__(self, nodes: set[str], vnodes: int = 160) -> None:
        ring = sorted((ring_point(f"{node}#{i}"), node) for node in nodes for i in range(vnodes))
        self.points = [point for point, _ in ring]
        self.owners = [node for _, node in ring]
        self.nodes = nodes

    def owner(self, key: str) -> str:
        index = bisect.bisect_left(self.points, ring_point(key))
        return self.owners[index if index < len(self.points) else 0]

    def preference_list(self, key: str, n: int) -> list[str]:
        start = bisect.bisect_left(self.points, ring_point(key))
        found: list[str] = []
        for offset in range(start, start + len(self.owners)):
            node = self.owners[offset % len(self.owners)]
            if len(found) == min(n, len(self.nodes)):
                break
            if node not in found:
                found.append(node)
        return found


KEYS = [f"session:{i}" for i in range(3_000)] + ["", "é", "\ud800lone", "a#1"]


def _assert_same(ring: HashRing, reference: ReferenceRing) -> None:
    assert ring.nodes == reference.nodes
    assert [ring.owner(key) for key in KEYS] == [reference.owner(key) for key in KEYS]
    for key in KEYS[:200]:
        assert ring.preference_list(key, 3) == reference.preference_list(key, 3)


def test_joins_and_leaves_in_any_order_place_every_key_as_the_reference_does() -> None:
    rng = random.Random(23)
    pool = [f"worker-{i}" for i in range(40)] + ["w", "w#1", "ü-worker"]
    ring = HashRing(vnodes=40)
    members: set[str] = set()
    for _ in range(30):
        node = rng.choice(pool)
        if node in members and rng.random() < 0.5:
            ring, members = ring.without_node(node), members - {node}
        else:
            ring, members = ring.with_node(node), members | {node}
        if members:
            _assert_same(ring, ReferenceRing(members, vnodes=40))


@pytest.mark.parametrize("size", [1, 2, 7, 100])
def test_a_built_ring_and_an_edited_ring_equal_the_reference(size: int) -> None:
    workers = {f"host-{i}.example:{i * 7}" for i in range(size)}
    reference = ReferenceRing(workers)
    built = HashRing(workers)
    edited = HashRing(sorted(workers)[: size // 2]).with_node("extra")
    for worker in sorted(workers)[size // 2 :]:
        edited = edited.with_node(worker)
    edited = edited.without_node("extra")
    for ring in (built, edited):
        _assert_same(ring, reference)


def test_owner_outside_answers_what_a_ring_without_the_excluded_workers_would() -> None:
    workers = {f"worker-{i}" for i in range(12)}
    ring = HashRing(workers)
    excluded = {"worker-3", "worker-7", "worker-8"}
    smaller = ReferenceRing(workers - excluded)
    assert [ring.owner_outside(key, excluded) for key in KEYS] == [
        smaller.owner(key) for key in KEYS
    ]
    assert ring.owner_outside("session:1", workers) is None
    with pytest.raises(NoLiveWorkers, match="ring is empty"):
        HashRing().owner_outside("session:1", ())
