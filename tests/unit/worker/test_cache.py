"""The thread-safe cache shell, driven from one thread on a fake clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from cluster.errors import AgentCacheError, ConfigError, SessionBusy
from tests.fakes import FakeAgent, FakeClock
from tests.support.cache import InspectableCache
from tests.unit.worker.conftest import CacheFactory
from worker.cache import PENDING, AgentCache, CheckoutHandle, EvictionCause

Cache = InspectableCache[FakeAgent]


def turn(
    cache: Cache,
    session_id: str,
    *,
    sig: str = "sig",
    n: int = 0,
    build: Callable[[], FakeAgent] | None = None,
    **kwargs: Any,
) -> AbstractContextManager[CheckoutHandle[FakeAgent]]:
    return cache.checkout(
        session_id,
        signature=sig,
        committed_turns=n,
        build=build or (lambda: FakeAgent(session_id)),
        **kwargs,
    )


def fill(cache: Cache, *keys: str, ts: float | None = None) -> dict[str, FakeAgent]:
    agents = {key: FakeAgent(key, last_activity_ts=ts) for key in keys}
    for key, agent in agents.items():
        cache.insert(key, agent, signature="sig")
    return agents


def settle(cache: Cache) -> None:
    assert cache.wait_for_releases(timeout=10)


# -- hits, misses, reuse ----------------------------------------------------------------


def test_miss_builds_and_hit_reuses_the_very_same_agent(cache: Cache) -> None:
    with turn(cache, "s") as first:
        assert not first.hit and first.replaced is None
        prompt = first.agent.cached_system_prompt
    with turn(cache, "s") as second:
        assert second.hit
        assert second.agent is first.agent
        assert second.agent.cached_system_prompt is prompt
    metrics = cache.metrics()
    assert (metrics["hits"], metrics["misses"], metrics["size"]) == (1, 1, 1)


def test_a_hit_sets_the_per_message_state_without_rebuilding(cache: Cache) -> None:
    builds: list[FakeAgent] = []

    def build() -> FakeAgent:
        builds.append(FakeAgent("s"))
        return builds[-1]

    with turn(cache, "s", build=build, turn_state={"reasoning_config": {"effort": "low"}}):
        pass
    with turn(
        cache,
        "s",
        build=build,
        turn_state={
            "reasoning_config": {"effort": "high"},
            "max_iterations": 5,
            "step_callback": len,
        },
    ) as handle:
        assert handle.hit and len(builds) == 1
        assert handle.agent.reasoning_config == {"effort": "high"}
        assert handle.agent.max_iterations == 5
        assert handle.agent.step_callback is len


def test_unknown_turn_state_key_fails_before_claiming_the_session(cache: Cache) -> None:
    with pytest.raises(AgentCacheError), turn(cache, "s", turn_state={"bogus": 1}):
        pass
    assert cache.running_sessions() == frozenset() and len(cache) == 0


def test_a_hit_refreshes_the_lru_position(cache: Cache) -> None:
    agents = fill(cache, "a", "b", "c")
    with turn(cache, "a") as handle:
        assert handle.hit
    assert cache.keys() == ["b", "c", "a"]
    fill(cache, "d")
    settle(cache)
    assert cache.keys() == ["c", "a", "d"]
    assert agents["b"].soft_releases == 1 and agents["a"].releases == 0


def test_peek_does_not_refresh_the_lru_position(cache: Cache) -> None:
    agents = fill(cache, "a", "b")
    assert cache.peek("a") is agents["a"] and cache.peek("zz") is None
    assert cache.keys() == ["a", "b"]


def test_signature_change_soft_releases_and_rebuilds(cache: Cache) -> None:
    with turn(cache, "s", sig="v1") as old:
        pass
    with turn(cache, "s", sig="v2") as new:
        assert not new.hit and new.replaced is EvictionCause.SIGNATURE
        assert new.agent is not old.agent
    settle(cache)
    assert (old.agent.soft_releases, old.agent.hard_closes) == (1, 0)
    assert cache.metrics()["signature_mismatches"] == 1
    assert cache.metrics()["evictions"]["signature"] == 1


def test_committed_turn_count_is_remembered_and_required_for_reuse(cache: Cache) -> None:
    with turn(cache, "s", n=0) as first:
        first.committed(1)
    with turn(cache, "s", n=1) as second:
        assert second.hit
        second.committed(2)
    with turn(cache, "s", n=2) as third:
        assert third.hit and third.agent is first.agent


def test_session_served_elsewhere_is_not_reused_and_is_soft_released(cache: Cache) -> None:
    with turn(cache, "s", n=4) as here:
        here.committed(5)
    with turn(cache, "s", n=7) as back:
        assert not back.hit and back.replaced is EvictionCause.SERVED_ELSEWHERE
        assert back.agent is not here.agent
    settle(cache)
    assert (here.agent.soft_releases, here.agent.hard_closes) == (1, 0)
    assert cache.metrics()["served_elsewhere"] == 1


def test_session_reset_elsewhere_lower_count_is_not_reused_either(cache: Cache) -> None:
    with turn(cache, "s", n=4) as here:
        here.committed(5)
    with turn(cache, "s", n=1) as back:
        assert not back.hit and back.replaced is EvictionCause.SERVED_ELSEWHERE


def test_a_turn_that_failed_before_committing_is_not_reused(cache: Cache) -> None:
    with turn(cache, "s", n=3) as first:
        pass
    with pytest.raises(RuntimeError), turn(cache, "s", n=3) as failed:
        assert failed.hit
        raise RuntimeError("provider went away mid-turn")
    settle(cache)
    assert first.agent.soft_releases == 1 and "s" not in cache
    assert cache.metrics()["evictions"]["failed_turn"] == 1
    with turn(cache, "s", n=3) as again:
        assert not again.hit


def test_a_turn_that_failed_after_committing_stays_cached(cache: Cache) -> None:
    with pytest.raises(RuntimeError), turn(cache, "s", n=3) as handle:
        handle.committed(4)
        raise RuntimeError("reply delivery failed")
    with turn(cache, "s", n=4) as again:
        assert again.hit and again.agent is handle.agent


def test_a_turn_that_ends_normally_without_committing_keeps_the_old_count(cache: Cache) -> None:
    with turn(cache, "s", n=3):
        pass
    with turn(cache, "s", n=3) as again:
        assert again.hit


def test_negative_committed_count_is_rejected(cache: Cache) -> None:
    with turn(cache, "s") as handle, pytest.raises(AgentCacheError):
        handle.committed(-1)


# -- build and the pending marker ------------------------------------------------------------


def test_build_runs_outside_the_lock_with_the_pending_marker_in_place(cache: Cache) -> None:
    seen: dict[str, Any] = {}

    def build() -> FakeAgent:
        seen["peek"] = cache.peek("s")
        seen["metrics"] = cache.metrics()
        cache.insert("other", FakeAgent("other"), signature="sig")
        return FakeAgent("s")

    with turn(cache, "s", build=build):
        pass
    assert seen["peek"] is PENDING
    assert seen["metrics"]["pending"] == 1 and seen["metrics"]["running"] == 1
    assert cache.keys() == ["s", "other"]


def test_a_failed_build_removes_the_marker_and_frees_the_session(cache: Cache) -> None:
    def broken() -> FakeAgent:
        raise ConnectionError("provider unreachable")

    with pytest.raises(ConnectionError), turn(cache, "s", build=broken):
        pytest.fail("the body must not run")
    assert "s" not in cache and cache.running_sessions() == frozenset()
    with turn(cache, "s") as handle:
        assert not handle.hit


def test_a_second_checkout_of_a_busy_session_fails_clearly_when_not_waiting(cache: Cache) -> None:
    with turn(cache, "s"):
        with pytest.raises(SessionBusy, match="'s' already has a turn"), turn(cache, "s", wait=0):
            pass
        with pytest.raises(SessionBusy):
            cache.insert("s", FakeAgent("s"), signature="sig")


# -- cap ---------------------------------------------------------------------------------


def test_cap_evicts_only_the_lru_excess_and_soft_releases(cache: Cache) -> None:
    agents = fill(cache, "a", "b", "c", "d", "e")
    settle(cache)
    assert cache.keys() == ["c", "d", "e"]
    assert [agents[k].soft_releases for k in "abcde"] == [1, 1, 0, 0, 0]
    assert all(agent.hard_closes == 0 for agent in agents.values())
    assert cache.metrics()["evictions"]["cap"] == 2


def test_mid_turn_lru_entry_is_skipped_with_a_warning_and_no_newer_victim(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.cache")
    with turn(cache, "a") as running:
        agents = fill(cache, "b", "c")
        assert cache.keys() == ["a", "b", "c"]
        agents |= fill(cache, "d")
        settle(cache)
        assert cache.keys() == ["a", "b", "c", "d"]
        assert all(agent.releases == 0 for agent in agents.values())
        assert running.agent.releases == 0
        warnings = [r for r in caplog.records if r.name == "worker.cache"]
        assert warnings and "mid-turn" in warnings[-1].getMessage()
        assert warnings[-1].levelno == logging.WARNING
        assert cache.metrics()["over_cap_events"] >= 1
    settle(cache)
    assert cache.keys() == ["b", "c", "d"]
    assert running.agent.soft_releases == 1


def test_all_entries_mid_turn_leave_the_cache_over_the_cap(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=2)
    with turn(cache, "a"), turn(cache, "b"), turn(cache, "c"), turn(cache, "d"):
        assert len(cache) == 4
        assert cache.metrics()["size"] == 4
    settle(cache)
    assert len(cache) == 2


def test_pending_build_does_not_protect_other_sessions_entries(cache: Cache) -> None:
    agents = fill(cache, "old", "mid")

    def build() -> FakeAgent:
        fill(cache, "new")  # cache now: old, mid, building (PENDING), new
        return FakeAgent("building")

    with turn(cache, "building", build=build):
        settle(cache)
        assert cache.keys() == ["mid", "building", "new"]
        assert agents["old"].soft_releases == 1


# -- single-session operations ------------------------------------------------------------


def test_evicting_one_session_never_touches_another(cache: Cache) -> None:
    agents = fill(cache, "a", "b", "c")
    assert cache.evict("b")
    assert not cache.evict("b")
    settle(cache)
    assert cache.keys() == ["a", "c"]
    assert agents["b"].soft_releases == 1 and agents["b"].client is None
    assert agents["a"].releases == 0 and agents["a"].client is not None
    assert agents["c"].releases == 0 and agents["c"].client is not None


def test_soft_eviction_vs_hard_session_end(cache: Cache) -> None:
    agents = fill(cache, "evicted", "ended", "kept")
    cache.evict("evicted")
    cache.close_session("ended")
    settle(cache)
    assert (agents["evicted"].soft_releases, agents["evicted"].hard_closes) == (1, 0)
    assert (agents["ended"].soft_releases, agents["ended"].hard_closes) == (0, 1)
    assert agents["kept"].releases == 0
    metrics = cache.metrics()
    assert (metrics["soft_releases"], metrics["hard_releases"]) == (1, 1)
    assert metrics["evictions"]["session_end"] == 1


def test_evicting_a_mid_turn_session_waits_for_its_turn_to_end(cache: Cache) -> None:
    with turn(cache, "s") as handle:
        assert cache.evict("s")
        settle(cache)
        assert handle.agent.releases == 0
    settle(cache)
    assert handle.agent.soft_releases == 1 and "s" not in cache


def test_ending_a_mid_turn_session_hard_closes_it_after_the_turn(cache: Cache) -> None:
    with turn(cache, "s") as handle:
        cache.evict("s")
        cache.close_session("s")
        settle(cache)
        assert handle.agent.releases == 0
    settle(cache)
    assert (handle.agent.soft_releases, handle.agent.hard_closes) == (0, 1)


def test_discard_releases_after_the_turn_so_the_next_message_rebuilds(cache: Cache) -> None:
    with turn(cache, "s") as fallback:
        fallback.discard()
    settle(cache)
    assert fallback.agent.soft_releases == 1
    with turn(cache, "s") as primary:
        assert not primary.hit
    assert cache.metrics()["evictions"]["discarded"] == 1


# -- global operations ----------------------------------------------------------------------


def test_invalidate_releases_idle_matches_and_defers_mid_turn_ones(cache: Cache) -> None:
    agents = fill(cache, "old", "fresh")
    cache.insert("fresh", agents["fresh"], signature="sig", config_version=2)
    with turn(cache, "busy", config_version=1) as busy:
        result = cache.invalidate(lambda info: info.config_version < 2)
        assert result.released == ("old",) and result.marked_stale == ("busy",)
        settle(cache)
        assert agents["old"].soft_releases == 1
        assert busy.agent.releases == 0 and agents["fresh"].releases == 0
    settle(cache)
    assert busy.agent.soft_releases == 1
    assert cache.keys() == ["fresh"]
    with turn(cache, "busy", config_version=2) as again:
        assert not again.hit
    assert cache.metrics()["evictions"]["config_bust"] == 2


def test_clear_soft_releases_everything(cache: Cache) -> None:
    agents = fill(cache, "a", "b")
    with turn(cache, "c") as running:
        assert cache.clear() == 3
        settle(cache)
        assert running.agent.releases == 0
    settle(cache)
    assert len(cache) == 0
    assert all(
        a.soft_releases == 1 and a.hard_closes == 0 for a in [*agents.values(), running.agent]
    )


def test_shutdown_is_soft_by_default_and_hard_on_request(make_cache: CacheFactory) -> None:
    drained, ending = make_cache(), make_cache()
    soft = fill(drained, "a")["a"]
    hard = fill(ending, "a")["a"]
    assert drained.shutdown() and ending.shutdown(hard=True)
    assert (soft.soft_releases, soft.hard_closes) == (1, 0)
    assert (hard.soft_releases, hard.hard_closes) == (0, 1)


# -- idle sweep ------------------------------------------------------------------------------


def test_sweep_evicts_idle_agents_and_returns_its_count(cache: Cache, clock: FakeClock) -> None:
    agents = fill(cache, "idle", "quiet", ts=clock.now)
    clock.advance(1800)
    agents["quiet"].last_activity_ts = clock.now
    clock.advance(1801)
    assert cache.sweep_idle() == 1
    settle(cache)
    assert cache.keys() == ["quiet"]
    assert agents["idle"].soft_releases == 1
    assert cache.metrics()["evictions"]["idle"] == 1


def test_sweep_skips_mid_turn_and_timestamp_less_agents(cache: Cache, clock: FakeClock) -> None:
    fill(cache, "never_active", ts=None)
    with turn(cache, "running") as handle:
        handle.agent.last_activity_ts = clock.now - 10_000
        assert cache.sweep_idle(now=clock.now + 10_000) == 0
    assert cache.keys() == ["never_active", "running"]
    assert cache.sweep_idle(now=clock.now + 10_000) == 1


# -- memory budget -------------------------------------------------------------------------


def test_memory_budget_evicts_lru_idle_agents_while_over(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=10, memory_budget=100)
    agents = {k: FakeAgent(k, memory=40) for k in "abc"}
    for key, agent in agents.items():
        cache.insert(key, agent, signature="sig")
    settle(cache)
    assert cache.keys() == ["b", "c"]
    assert cache.metrics()["memory_bytes"] == 80
    assert cache.metrics()["evictions"]["memory"] == 1


def test_memory_is_measured_again_when_a_turn_ends(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=10, memory_budget=100)
    idle = FakeAgent("idle", memory=30)
    cache.insert("idle", idle, signature="sig")
    with turn(cache, "talker", build=lambda: FakeAgent("talker", memory=10)) as handle:
        handle.agent.memory = 90  # the transcript grew during the turn
    settle(cache)
    assert cache.keys() == ["talker"] and idle.soft_releases == 1
    assert cache.metrics()["memory_bytes"] == 90


# -- settings and metrics ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{"max_size": 0}, {"idle_ttl": 0}, {"sweep_interval": -1}, {"memory_budget": -1}],
)
def test_out_of_range_settings_are_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AgentCache(**settings)


def test_defaults_match_the_design() -> None:
    cache: AgentCache[FakeAgent] = AgentCache()
    assert (cache.max_size, cache.idle_ttl, cache.memory_budget) == (128, 3600.0, None)


def test_metrics_snapshot_is_a_plain_json_safe_dict(cache: Cache) -> None:
    fill(cache, "a", "b", "c", "d")
    with turn(cache, "a", sig="other"):
        snapshot = cache.metrics()
    json.dumps(snapshot)
    assert snapshot["size"] == 3 and snapshot["cap"] == 3 and snapshot["running"] == 1
    assert snapshot["misses"] == 1 and snapshot["hits"] == 0
    assert set(snapshot["evictions"]) == {cause.value for cause in EvictionCause}
    snapshot["evictions"]["cap"] = 99
    assert cache.metrics()["evictions"]["cap"] == 2


def test_rss_near_the_budget_soft_releases_lru_idle_agents_never_mid_turn(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(max_size=10, memory_budget=10_000)
    agents = {k: FakeAgent(k, memory=100) for k in "abc"}
    for key, agent in agents.items():
        cache.insert(key, agent, signature="sig")
    with turn(cache, "a", build=lambda: agents["a"]):  # "a" is mid-turn (a hit on the cached agent)
        assert cache.shed_for_memory(rss=950, budget=1000) == 2
        settle(cache)
        assert cache.keys() == ["a"]
        assert "mid-turn" not in caplog.text  # "a" is the most recent now: not in the way
    assert (agents["b"].soft_releases, agents["b"].hard_closes) == (1, 0)
    assert agents["a"].soft_releases == 0
    metrics = cache.metrics()
    assert (metrics["rss_bytes"], metrics["rss_budget"]) == (950, 1000)
    assert metrics["evictions"]["memory"] == 2


def test_rss_shedding_warns_once_about_a_mid_turn_agent_in_the_way(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(max_size=10, memory_budget=10_000)
    with turn(cache, "busy", build=lambda: FakeAgent("busy", memory=500)):
        fill(cache, "idle")
        for _ in range(3):
            assert cache.shed_for_memory(rss=2000, budget=1000) == 0 or "idle" not in cache
        warnings = [r for r in caplog.records if "mid-turn" in r.getMessage()]
        assert len(warnings) == 1 and "busy" in warnings[0].getMessage()
    assert "busy" in cache
