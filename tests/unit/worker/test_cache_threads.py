"""The cache under real threads: background releases, slow releases, concurrent inserts."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import FakeAgent, FakeClock, InlineReleaser
from tests.support.cache import InspectableCache
from tests.unit.worker.conftest import CacheFactory
from worker.cache import EvictionCause, Release, Releaser

Cache = InspectableCache[FakeAgent]
DEADLINE = 10.0


def run_in_thread(target: Callable[[], Any], *, timeout: float = DEADLINE) -> None:
    """Run ``target`` on a thread and fail (instead of hanging) if it does not finish."""
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised on the test's thread
            errors.append(exc)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{target} did not finish within {timeout}s"
    if errors:
        raise errors[0]


def lock_is_free(cache: Cache) -> bool:
    """Whether another thread can take the cache lock (i.e. the caller does not hold it)."""
    result: list[int] = []
    probe = threading.Thread(target=lambda: result.append(len(cache)), daemon=True)
    probe.start()
    probe.join(2.0)
    return bool(result)


def test_releases_run_off_the_callers_thread(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=1)
    first = FakeAgent("a")
    cache.insert("a", first, signature="sig")
    cache.insert("b", FakeAgent("b"), signature="sig")
    assert first.released.wait(DEADLINE)
    assert first.release_threads and first.release_threads[0] is not threading.current_thread()
    assert first.release_threads[0].daemon


def test_releases_are_handed_off_after_the_lock_is_dropped(make_cache: CacheFactory) -> None:
    # The inline releaser runs the release inside submit(): if the cache submitted
    # while holding its lock, no other thread could take the lock during the release.
    cache = make_cache(max_size=1, releaser=InlineReleaser())
    observed: list[bool] = []
    victims = [
        FakeAgent(k, on_release=lambda _a: observed.append(lock_is_free(cache))) for k in "abc"
    ]
    cache.insert("a", victims[0], signature="sig")
    cache.insert("b", victims[1], signature="sig")  # cap eviction of a
    cache.evict("b")  # explicit eviction
    cache.insert("c", victims[2], signature="sig")
    cache.close_session("c")  # hard close
    assert observed == [True, True, True]


def test_a_slow_release_does_not_delay_other_cache_operations(
    make_cache: CacheFactory, clock: FakeClock
) -> None:
    cache = make_cache(max_size=2)
    gate, started = threading.Event(), threading.Event()
    slow = FakeAgent("slow", release_gate=gate, on_release=lambda _agent: started.set())
    cache.insert("slow", slow, signature="sig")
    cache.evict("slow")
    assert started.wait(DEADLINE)  # a releaser thread is now stuck in release_clients()

    others = [FakeAgent(f"o{i}", last_activity_ts=clock.now) for i in range(4)]

    def other_work() -> None:
        for agent in others:
            cache.insert(agent.session_id, agent, signature="sig")
        with cache.checkout("o3", signature="sig", committed_turns=0, build=FakeAgent):
            pass
        cache.sweep_idle(now=clock.now + 10_000)
        cache.metrics()

    try:
        run_in_thread(other_work)
        # The second releaser thread keeps releasing while the first is stuck.
        assert all(agent.released.wait(DEADLINE) for agent in others)
        assert slow.soft_releases == 0
    finally:
        gate.set()
    assert cache.wait_for_releases(DEADLINE)
    assert slow.soft_releases == 1


def test_concurrent_inserts_settle_at_exactly_the_cap(make_cache: CacheFactory) -> None:
    cache = make_cache(max_size=16)
    threads_n, per_thread = 8, 20
    start = threading.Barrier(threads_n)
    agents: list[list[FakeAgent]] = [
        [FakeAgent(f"t{t}-{i}") for i in range(per_thread)] for t in range(threads_n)
    ]

    def inserter(mine: list[FakeAgent]) -> None:
        start.wait(DEADLINE)
        for agent in mine:
            cache.insert(agent.session_id, agent, signature="sig")

    threads = [threading.Thread(target=inserter, args=(mine,), daemon=True) for mine in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert len(cache) == 16
    assert cache.wait_for_releases(DEADLINE)
    everyone = [agent for mine in agents for agent in mine]
    kept = set(cache.keys())
    assert [a.releases for a in everyone if a.session_id in kept] == [0] * 16
    assert [a.releases for a in everyone if a.session_id not in kept] == [1] * 144
    assert cache.metrics()["evictions"]["cap"] == 144


def test_concurrent_turns_settle_at_the_cap_and_never_release_a_running_agent(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache(max_size=16)
    built: list[FakeAgent] = []
    built_lock = threading.Lock()
    start = threading.Barrier(8)

    def build_for(session: str) -> FakeAgent:
        agent = FakeAgent(session)
        with built_lock:
            built.append(agent)
        return agent

    def worker(t: int) -> None:
        start.wait(DEADLINE)
        for i in range(20):
            session = f"s{(t * 7 + i) % 40}"
            with cache.checkout(
                session,
                signature="sig",
                committed_turns=0,
                build=functools.partial(build_for, session),
                wait=None,
            ) as handle:
                handle.agent.in_turn = True
                handle.agent.in_turn = False

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert len(cache) == 16 and cache.running_sessions() == frozenset()
    assert cache.wait_for_releases(DEADLINE)
    cached = {id(cache.peek(key)) for key in cache.keys()}
    assert all(a.releases == (0 if id(a) in cached else 1) for a in built)
    assert not any(a.released_in_turn for a in built)


def test_a_concurrent_checkout_of_the_same_session_waits_and_never_builds_twice(
    make_cache: CacheFactory,
) -> None:
    cache = make_cache()
    building, finish_build = threading.Event(), threading.Event()
    builds: list[FakeAgent] = []

    def slow_build() -> FakeAgent:
        builds.append(FakeAgent("s"))
        building.set()
        assert finish_build.wait(DEADLINE)
        return builds[-1]

    outcomes: list[bool] = []

    def first() -> None:
        with cache.checkout("s", signature="sig", committed_turns=0, build=slow_build) as h:
            outcomes.append(h.hit)

    def second() -> None:
        assert building.wait(DEADLINE)
        with cache.checkout(
            "s", signature="sig", committed_turns=0, build=slow_build, wait=DEADLINE
        ) as h:
            outcomes.append(h.hit)

    t1 = threading.Thread(target=first, daemon=True)
    t2 = threading.Thread(target=second, daemon=True)
    t1.start()
    t2.start()
    assert building.wait(DEADLINE)
    t2.join(0.05)  # the second caller is blocked while the first builds
    assert t2.is_alive() and outcomes == []
    finish_build.set()
    t1.join(DEADLINE)
    t2.join(DEADLINE)
    assert outcomes == [False, True] and len(builds) == 1


def test_sweeper_thread_sweeps_on_its_interval_until_stopped(
    make_cache: CacheFactory, clock: FakeClock
) -> None:
    cache = make_cache(idle_ttl=60, sweep_interval=0.01)
    agent = FakeAgent("s", last_activity_ts=clock.now)
    cache.insert("s", agent, signature="sig")
    cache.start_sweeper()
    cache.start_sweeper()  # idempotent
    clock.advance(61)
    assert agent.released.wait(DEADLINE)
    assert cache.stop_sweeper(DEADLINE)
    assert cache.metrics()["evictions"]["idle"] == 1


def test_a_failing_release_is_logged_and_the_releaser_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    releaser = Releaser(max_threads=1)

    class Exploding(FakeAgent):
        def release_clients(self) -> None:
            raise OSError("socket already closed")

    after = FakeAgent("after")
    releaser.submit(Release("boom", Exploding("boom"), hard=False, cause=EvictionCause.CAP))
    releaser.submit(Release("after", after, hard=True, cause=EvictionCause.SESSION_END))
    assert releaser.wait_idle(DEADLINE)
    assert releaser.close(DEADLINE)
    assert after.hard_closes == 1
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert failures and "boom" in failures[0].getMessage()


def test_releaser_restarts_after_close() -> None:
    releaser = Releaser()
    assert releaser.close(DEADLINE)
    agent = FakeAgent("late")
    releaser.submit(Release("late", agent, hard=False, cause=EvictionCause.EVICTED))
    assert agent.released.wait(DEADLINE)
    assert releaser.close(DEADLINE) and releaser.wait_idle(0), "nothing left unfinished"
