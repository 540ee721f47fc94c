"""Contract-test fixtures: every test here runs on fakeredis, on a real redis-server, and on
a real primary with a replica (the fenced scripts read the primary's replication id)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from cluster.connection import connect
from cluster.keys import Keyspace
from tests.support.sentinel_topology import ReplicatedRedis, replicated_redis

__all__ = ["replicated_redis"]  # the session fixture, re-exported for pytest


@pytest.fixture(
    params=[
        "fakeredis",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("replicated", marks=pytest.mark.integration),
    ]
)
def client(request: pytest.FixtureRequest, namespace: str) -> Iterator[redis.Redis]:
    """A bytes client of fakeredis, of the suite's redis-server, or of a replicated primary."""
    if request.param == "fakeredis":
        fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield fake
        fake.close()
    elif request.param == "redis":
        real: redis.Redis = request.getfixturevalue("redis_client")
        yield real
    else:
        pair: ReplicatedRedis = request.getfixturevalue("replicated_redis")
        primary = connect(pair.url)
        yield primary
        for pattern in (f"{namespace}:*", f"{{{namespace}}}*"):
            for key in primary.scan_iter(match=pattern, count=1000):
                primary.delete(key)
        primary.close()


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
