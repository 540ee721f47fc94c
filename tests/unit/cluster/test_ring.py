"""The consistent-hash ring: stable placement, minimal movement, bounded loads."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.errors import ConfigError, NoLiveWorkers
from cluster.ring import HashRing, bounded_capacity

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKERS = [f"worker-{i}" for i in range(10)]
KEYS = [f"session:{i}" for i in range(10_000)]


@pytest.fixture(scope="module")
def ring() -> HashRing:
    return HashRing(WORKERS)


@pytest.fixture(scope="module")
def owners(ring: HashRing) -> dict[str, str]:
    return {key: ring.owner(key) for key in KEYS}


# -- determinism --------------------------------------------------------------


def test_rings_built_in_any_order_route_every_key_the_same(owners: dict[str, str]) -> None:
    shuffled = WORKERS[:]
    random.Random(7).shuffle(shuffled)
    grown = HashRing()
    for worker in shuffled:
        grown = grown.with_node(worker)
    shrunk = (
        HashRing([*WORKERS, "worker-x", "worker-y"])
        .without_node("worker-y")
        .without_node("worker-x")
    )

    for other in (HashRing(reversed(WORKERS)), HashRing(shuffled + shuffled), grown, shrunk):
        assert other == HashRing(WORKERS)
        assert {key: other.owner(key) for key in KEYS} == owners
    assert grown.preference_list("session:1", 10) == HashRing(WORKERS).preference_list(
        "session:1", 10
    )


def test_placement_is_the_same_in_another_process_with_another_hash_seed(
    owners: dict[str, str],
) -> None:
    # Python's hash() is salted per process; the ring must not depend on it.
    script = (
        "from cluster.ring import HashRing\n"
        f"ring = HashRing({WORKERS!r})\n"
        "print(','.join(ring.owner(f'session:{i}') for i in range(200)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().split(",") == [owners[f"session:{i}"] for i in range(200)]


# -- movement -----------------------------------------------------------------


def test_adding_an_eleventh_worker_moves_at_most_a_fair_share_and_only_to_it(
    ring: HashRing, owners: dict[str, str]
) -> None:
    grown = ring.with_node("worker-new")

    moved = {key for key in KEYS if grown.owner(key) != owners[key]}

    assert len(moved) / len(KEYS) <= 1 / 11 + 0.01
    assert moved, "the new worker should take some sessions"
    assert {grown.owner(key) for key in moved} == {"worker-new"}


def test_removing_a_worker_moves_only_its_own_sessions(
    ring: HashRing, owners: dict[str, str]
) -> None:
    shrunk = ring.without_node("worker-3")

    moved = {key for key in KEYS if shrunk.owner(key) != owners[key]}

    assert moved == {key for key, owner in owners.items() if owner == "worker-3"}
    assert "worker-3" not in {shrunk.owner(key) for key in moved}


def test_membership_changes_return_new_rings_and_leave_the_original_alone(ring: HashRing) -> None:
    before = ring.owner("session:1")
    grown = ring.with_node("worker-new")
    assert grown is not ring
    assert "worker-new" in grown and "worker-new" not in ring
    assert ring.owner("session:1") == before
    assert ring.with_node("worker-1") is ring
    assert ring.without_node("never-joined") is ring


# -- preference list ----------------------------------------------------------


def test_preference_list_is_distinct_starts_with_the_owner_and_caps_at_ring_size(
    ring: HashRing,
) -> None:
    for key in KEYS[:500]:
        prefs = ring.preference_list(key, 3)
        assert len(prefs) == len(set(prefs)) == 3
        assert prefs[0] == ring.owner(key)
    assert sorted(ring.preference_list("session:1", 50)) == sorted(WORKERS)
    assert ring.preference_list("session:1", 0) == []


def test_preference_list_names_who_takes_over_when_the_owner_drains(ring: HashRing) -> None:
    for key in KEYS[:500]:
        owner, successor, third = ring.preference_list(key, 3)
        assert ring.without_node(owner).owner(key) == successor
        assert ring.without_node(owner).without_node(successor).owner(key) == third


# -- bounded loads ------------------------------------------------------------


def test_bounded_assignment_of_10000_keys_over_10_workers_stays_within_1_10_of_the_mean(
    ring: HashRing,
) -> None:
    assignment = ring.assign_bounded(KEYS, load_factor=1.10)

    counts = Counter(assignment.values())
    assert set(assignment) == set(KEYS)
    assert set(counts) == set(WORKERS)
    assert max(counts.values()) <= 1_100  # ceil(1.10 * 10_000 / 10)
    assert max(counts.values()) / (len(KEYS) / len(WORKERS)) <= 1.10


@pytest.mark.parametrize("load_factor", [1.0, 1.05, 1.25, 2.0])
def test_bounded_assignment_never_exceeds_its_capacity(ring: HashRing, load_factor: float) -> None:
    keys = KEYS[:3_001]
    counts = Counter(ring.assign_bounded(keys, load_factor=load_factor).values())
    assert max(counts.values()) <= math.ceil(Fraction(str(load_factor)) * len(keys) / len(WORKERS))


def test_bounded_assignment_depends_only_on_the_set_of_keys(ring: HashRing) -> None:
    keys = KEYS[:2_000]
    shuffled = keys[::-1] + keys[:10]
    assert ring.assign_bounded(shuffled, load_factor=1.1) == ring.assign_bounded(
        keys, load_factor=1.1
    )


def test_bounded_owner_is_the_plain_owner_while_it_has_room(ring: HashRing) -> None:
    for key in KEYS[:200]:
        assert ring.owner_bounded(key, {}) == ring.owner(key)


def test_bounded_owner_skips_full_workers_clockwise(ring: HashRing) -> None:
    key = "session:42"
    owner, successor, third = ring.preference_list(key, 3)
    # 111 keys over 10 workers at c=1.25: capacity ceil(1.25 * 112 / 10) = 14.
    loads = dict.fromkeys(WORKERS, 10)
    loads[owner] = 14
    loads[successor] = 14
    loads[third] = 13
    assert sum(loads.values()) == 111
    assert bounded_capacity(111, 10, 1.25) == 14
    assert ring.owner_bounded(key, loads, load_factor=1.25) == third


def test_bounded_owner_ignores_loads_of_departed_workers(ring: HashRing) -> None:
    key = "session:42"
    assert ring.owner_bounded(key, {"gone-worker": 1_000_000}) == ring.owner(key)


def test_capacity_reads_the_load_factor_as_written() -> None:
    # As a binary float, 1.1 * 10_000 / 10 is 1100.0000000000002, which would round up to 1101.
    assert bounded_capacity(9_999, 10, 1.1) == 1_100
    assert bounded_capacity(9_999, 10, Fraction(11, 10)) == 1_100
    assert bounded_capacity(0, 10, 1.25) == 1


def test_a_key_with_a_lone_surrogate_still_has_an_owner(ring: HashRing) -> None:
    # json.loads('"\\ud800"') yields such a key; it must route, not crash.
    assert ring.owner("session:\ud800") in WORKERS


# -- errors -------------------------------------------------------------------


def test_an_empty_ring_raises_no_live_workers_with_a_hint() -> None:
    empty = HashRing()
    with pytest.raises(NoLiveWorkers, match="start a worker"):
        empty.owner("session:1")
    with pytest.raises(NoLiveWorkers):
        empty.preference_list("session:1", 2)
    with pytest.raises(NoLiveWorkers):
        empty.owner_bounded("session:1", {})
    with pytest.raises(NoLiveWorkers):
        empty.assign_bounded(["session:1"])
    assert empty.assign_bounded([]) == {}
    assert HashRing(["w1"]).without_node("w1") == empty


@pytest.mark.parametrize("vnodes", [0, -1, True, 2.5])
def test_invalid_vnodes_are_a_config_error(vnodes: object) -> None:
    with pytest.raises(ConfigError, match="vnodes must be a positive integer"):
        HashRing(["w1"], vnodes=vnodes)  # type: ignore[arg-type]


@pytest.mark.parametrize("load_factor", [0.99, 0, -1, float("nan"), float("inf")])
def test_a_load_factor_below_one_is_a_config_error(ring: HashRing, load_factor: float) -> None:
    with pytest.raises(ConfigError, match="load_factor must be a number >= 1"):
        ring.assign_bounded(KEYS[:10], load_factor=load_factor)
    with pytest.raises(ConfigError, match="load_factor"):
        ring.owner_bounded("session:1", {}, load_factor=load_factor)


@pytest.mark.parametrize("node", ["", None, 3])
def test_worker_ids_must_be_non_empty_strings(node: object) -> None:
    with pytest.raises(ValueError, match="worker ids must be non-empty strings"):
        HashRing(["w1", node])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="worker ids must be non-empty strings"):
        HashRing(["w1"]).with_node(node)  # type: ignore[arg-type]


def test_a_negative_preference_list_length_is_rejected(ring: HashRing) -> None:
    with pytest.raises(ValueError, match="n >= 0"):
        ring.preference_list("session:1", -1)


# -- properties ---------------------------------------------------------------

worker_sets = st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=8)


any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates too


@given(nodes=worker_sets, key=any_text)
def test_the_owner_is_always_a_worker_on_the_ring(nodes: set[str], key: str) -> None:
    ring = HashRing(nodes, vnodes=16)
    assert ring.owner(key) in nodes
    assert ring.owner_bounded(key, {}) in nodes


@given(nodes=worker_sets, key=any_text, data=st.data())
def test_removing_a_worker_that_does_not_own_a_key_never_moves_it(
    nodes: set[str], key: str, data: st.DataObject
) -> None:
    ring = HashRing(nodes, vnodes=16)
    owner = ring.owner(key)
    others = sorted(nodes - {owner})
    if not others:
        return
    removed = data.draw(st.sampled_from(others))
    assert ring.without_node(removed).owner(key) == owner


@given(nodes=worker_sets, newcomer=st.text(min_size=1, max_size=12), key=any_text)
def test_a_joining_worker_either_takes_a_key_or_leaves_it_where_it_was(
    nodes: set[str], newcomer: str, key: str
) -> None:
    ring = HashRing(nodes, vnodes=16)
    assert ring.with_node(newcomer).owner(key) in {ring.owner(key), newcomer}
