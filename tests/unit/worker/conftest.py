"""Fixtures of the worker-cache unit tests: a fake clock and caches torn down after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes import FakeAgent, FakeClock
from tests.support.cache import InspectableCache

CacheFactory = Callable[..., InspectableCache[FakeAgent]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_cache(clock: FakeClock) -> Iterator[CacheFactory]:
    """Build caches on the fake clock (real background releaser unless given one).

    Every cache is shut down after the test, so no releaser or sweeper thread
    outlives it.
    """
    made: list[InspectableCache[FakeAgent]] = []

    def make(**kwargs: Any) -> InspectableCache[FakeAgent]:
        kwargs.setdefault("clock", clock)
        cache: InspectableCache[FakeAgent] = InspectableCache(**kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        assert cache.shutdown(timeout=10), "releases still running at teardown"


@pytest.fixture
def cache(make_cache: CacheFactory) -> InspectableCache[FakeAgent]:
    """A cache with a cap of 3 and a one-hour idle TTL."""
    return make_cache(max_size=3, idle_ttl=3600.0)
