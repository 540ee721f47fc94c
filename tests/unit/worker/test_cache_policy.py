"""The pure eviction policy: cap window, idle sweep, memory budget, RSS shedding, invalidation."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tests.fakes import FakeAgent
from worker.cache import PENDING
from worker.cache.policy import (
    EvictionCause,
    plan_cap_eviction,
    plan_idle_sweep,
    plan_invalidation,
    plan_memory_eviction,
    plan_rss_eviction,
)

NOW = 100_000.0


@dataclass
class E:
    agent: object
    memory_bytes: int = 0


def entries(*keys: str, ts: float | None = NOW) -> OrderedDict[str, E]:
    return OrderedDict((k, E(FakeAgent(k, last_activity_ts=ts))) for k in keys)


# -- cap -----------------------------------------------------------------------------


def test_under_or_at_cap_nothing_is_evicted() -> None:
    decision = plan_cap_eviction(entries("a", "b", "c"), set(), 3)
    assert decision.victims == () and not decision.still_over


def test_cap_evicts_exactly_the_lru_excess_window() -> None:
    decision = plan_cap_eviction(entries("a", "b", "c", "d", "e"), set(), 3)
    assert decision.cause is EvictionCause.CAP
    assert decision.victims == ("a", "b")
    assert not decision.still_over


def test_mid_turn_lru_entry_is_skipped_and_not_replaced_by_a_newer_victim() -> None:
    decision = plan_cap_eviction(entries("a", "b", "c", "d"), {"a"}, 3)
    assert decision.victims == ()
    assert decision.skipped_mid_turn == ("a",)
    assert decision.still_over


def test_mid_turn_entry_in_the_window_only_protects_itself() -> None:
    decision = plan_cap_eviction(entries("a", "b", "c", "d", "e"), {"b"}, 3)
    assert decision.victims == ("a",)
    assert decision.skipped_mid_turn == ("b",)
    assert decision.still_over


def test_all_entries_mid_turn_leave_the_cache_over_the_cap() -> None:
    keys = ("a", "b", "c", "d", "e")
    decision = plan_cap_eviction(entries(*keys), set(keys), 2)
    assert decision.victims == ()
    assert decision.skipped_mid_turn == ("a", "b", "c")
    assert decision.still_over


def test_running_entries_outside_the_window_do_not_matter() -> None:
    decision = plan_cap_eviction(entries("a", "b", "c", "d"), {"c", "d"}, 2)
    assert decision.victims == ("a", "b")
    assert decision.skipped_mid_turn == ()


def test_pending_marker_does_not_protect_other_sessions_entries() -> None:
    cache = entries("old", "mid")
    cache["building"] = E(PENDING)
    decision = plan_cap_eviction(cache, {"building"}, 2)
    assert decision.victims == ("old",)
    assert decision.skipped_mid_turn == () and decision.skipped_pending == ()


def test_a_pending_entry_in_the_window_protects_only_itself() -> None:
    cache: OrderedDict[str, E] = OrderedDict(building=E(PENDING))
    cache.update(entries("a", "b", "c"))
    decision = plan_cap_eviction(cache, {"building"}, 2)
    assert decision.victims == ("a",)
    assert decision.skipped_pending == ("building",)
    assert decision.still_over


def test_a_plain_dict_cache_does_not_crash_cap_enforcement() -> None:
    plain = {"a": E(FakeAgent("a")), "b": E(FakeAgent("b")), "c": E(FakeAgent("c"))}
    decision = plan_cap_eviction(plain, frozenset(), 1)
    assert decision.victims == ("a", "b")


def test_running_may_be_any_container_such_as_a_mapping_of_running_agents() -> None:
    running = {"a": object()}
    decision = plan_cap_eviction(entries("a", "b", "c"), running, 1)
    assert decision.victims == ("b",)
    assert decision.skipped_mid_turn == ("a",)


def test_policy_does_not_touch_the_entries() -> None:
    cache = entries("a", "b", "c")
    plan_cap_eviction(cache, set(), 1)
    plan_idle_sweep(cache, set(), NOW * 2, 1.0)
    assert list(cache) == ["a", "b", "c"]
    assert all(isinstance(e.agent, FakeAgent) and e.agent.releases == 0 for e in cache.values())


# -- idle sweep --------------------------------------------------------------------------


def test_sweep_evicts_agents_idle_longer_than_the_ttl() -> None:
    cache = entries("fresh")
    cache["stale"] = E(FakeAgent("stale", last_activity_ts=NOW - 3601))
    cache["edge"] = E(FakeAgent("edge", last_activity_ts=NOW - 3600))
    decision = plan_idle_sweep(cache, set(), NOW, 3600)
    assert decision.cause is EvictionCause.IDLE
    assert decision.victims == ("stale",)


def test_sweep_skips_mid_turn_and_timestamp_less_agents() -> None:
    cache: OrderedDict[str, E] = OrderedDict(
        running=E(FakeAgent("running", last_activity_ts=0.0)),
        never_active=E(FakeAgent("never_active", last_activity_ts=None)),
        no_attribute=E(object()),
        building=E(PENDING),
        idle=E(FakeAgent("idle", last_activity_ts=0.0)),
    )
    decision = plan_idle_sweep(cache, {"running", "building"}, NOW, 60)
    assert decision.victims == ("idle",)
    assert decision.skipped_mid_turn == ("running",)


# -- memory budget ---------------------------------------------------------------------


def sized(**sizes: int) -> OrderedDict[str, E]:
    return OrderedDict((k, E(FakeAgent(k), memory_bytes=v)) for k, v in sizes.items())


def test_memory_budget_evicts_lru_idle_agents_until_it_fits() -> None:
    decision = plan_memory_eviction(sized(a=40, b=30, c=20, d=10), set(), 50)
    assert decision.cause is EvictionCause.MEMORY
    assert decision.victims == ("a", "b")
    assert not decision.still_over


def test_memory_budget_skips_mid_turn_agents_but_counts_their_bytes() -> None:
    decision = plan_memory_eviction(sized(a=40, b=30, c=20), {"a"}, 65)
    assert decision.victims == ("b",)
    assert decision.skipped_mid_turn == ("a",)
    assert not decision.still_over


def test_memory_budget_reports_when_only_mid_turn_agents_are_left() -> None:
    decision = plan_memory_eviction(sized(a=80, b=10), {"a"}, 50)
    assert decision.victims == ("b",)
    assert decision.still_over


def test_memory_budget_trusts_a_given_total() -> None:
    assert plan_memory_eviction(sized(a=100), set(), 50, total_bytes=10).victims == ()


# -- invalidation ------------------------------------------------------------------------


def test_invalidation_releases_idle_matches_and_marks_running_ones_stale() -> None:
    cache = entries("a", "b", "c", "d")
    cache["e"] = E(PENDING)
    decision = plan_invalidation(cache, {"b", "e"}, lambda key, _e: key != "d")
    assert decision.release_now == ("a", "c")
    assert decision.mark_stale == ("b", "e")


# -- RSS near the memory budget ----------------------------------------------------------


def test_below_the_high_water_mark_nothing_is_shed() -> None:
    decision = plan_rss_eviction(sized(a=50, b=50), set(), rss=900, budget=1000)
    assert decision.cause is EvictionCause.MEMORY and decision.victims == ()


def test_past_the_high_water_mark_lru_agents_are_shed_down_to_the_low_water_mark() -> None:
    # RSS 950 of 1000: free 150 to reach 800; a (100) is not enough, a+b (200) is.
    decision = plan_rss_eviction(sized(a=100, b=100, c=100), set(), rss=950, budget=1000)
    assert decision.victims == ("a", "b") and not decision.still_over


def test_rss_shedding_skips_mid_turn_and_pending_agents_and_says_so() -> None:
    entries = sized(a=100, b=100, c=100, d=100)
    entries["b"] = E(PENDING, memory_bytes=0)
    decision = plan_rss_eviction(entries, {"a"}, rss=950, budget=1000)
    assert decision.victims == ("c", "d")
    assert decision.skipped_mid_turn == ("a",) and decision.skipped_pending == ("b",)


def test_rss_over_budget_with_too_little_to_shed_is_reported() -> None:
    decision = plan_rss_eviction(sized(a=10, b=10), {"b"}, rss=2000, budget=1000)
    assert decision.victims == ("a",) and decision.still_over


def test_an_agent_without_an_estimate_is_shed_one_at_a_time() -> None:
    decision = plan_rss_eviction(sized(a=0, b=0), set(), rss=801 + 100, budget=1000)
    assert decision.victims == ("a", "b")  # each counts as 1 byte of the 101 to free
    assert decision.still_over
