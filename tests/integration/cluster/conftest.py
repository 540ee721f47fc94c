"""Contract-test fixtures: every test here runs on fakeredis and on a real redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from cluster.keys import Keyspace


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.integration)])
def client(request: pytest.FixtureRequest, namespace: str) -> Iterator[redis.Redis]:
    """A bytes client of fakeredis or of the suite's redis-server (namespace cleaned)."""
    if request.param == "fakeredis":
        fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield fake
        fake.close()
    else:
        real: redis.Redis = request.getfixturevalue("redis_client")
        yield real


@pytest.fixture
def keyspace(namespace: str) -> Keyspace:
    """The test's own keyspace."""
    return Keyspace(namespace)


@pytest.fixture
def round_trips(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count connection checkouts of ``client`` (one per command or pipeline sent).

    Returns a function giving the count so far.
    """
    pool = client.connection_pool
    original = pool.get_connection
    count = [0]

    def counting(*args: object, **kwargs: object) -> object:
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counting)
    return lambda: count[0]
