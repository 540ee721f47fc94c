"""The test TCP proxy cuts a client off from Redis the way a network does: a stall
leaves requests unanswered (the client's timeout notices), a drop resets open
connections and refuses new ones, and restoring lets traffic through again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import RedisServer
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    with TcpProxy((redis_server.host, redis_server.port)) as made:
        yield made


def _client(proxy: TcpProxy) -> redis.Redis:
    """A client that reports the first failure (redis-py would retry 3 times with backoff)."""
    return redis.Redis(
        host=proxy.host,
        port=proxy.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def test_a_proxy_passes_commands_to_redis(proxy: TcpProxy, namespace: str) -> None:
    client = _client(proxy)
    client.set(f"{namespace}:k", "v")
    assert client.get(f"{namespace}:k") == b"v"
    assert proxy.connections_made == 1
    client.delete(f"{namespace}:k")
    client.close()


def test_a_stall_leaves_requests_unanswered_until_restored(
    proxy: TcpProxy, namespace: str, redis_client: redis.Redis
) -> None:
    client = _client(proxy)
    assert client.ping()
    proxy.stall()
    with pytest.raises(redis.TimeoutError):
        client.set(f"{namespace}:stalled", "held")
    assert redis_client.get(f"{namespace}:stalled") is None  # held by the "network"
    proxy.restore()
    # The held bytes go through: a write its client saw time out may still happen,
    # as on a real network.
    deadline = time.monotonic() + 10
    while redis_client.get(f"{namespace}:stalled") is None:
        assert time.monotonic() < deadline, "the stalled write never landed"
        time.sleep(0.02)
    fresh = _client(proxy)
    assert fresh.set(f"{namespace}:after", "ok")
    assert redis_client.get(f"{namespace}:after") == b"ok"
    fresh.close()
    client.close()


def test_a_drop_resets_open_connections_and_refuses_new_ones_until_restored(
    proxy: TcpProxy,
) -> None:
    client = _client(proxy)
    assert client.ping()
    proxy.drop()
    assert proxy.open_connections() == 0
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError):
        _client(proxy).ping()
    proxy.restore()
    assert client.ping()  # redis-py reconnects, through the proxy again
    assert proxy.connections_made >= 2
    client.close()


def test_a_proxy_asks_its_target_at_each_connection(redis_server: RedisServer) -> None:
    targets = [("127.0.0.1", 1), (redis_server.host, redis_server.port)]  # port 1: refused
    with TcpProxy(lambda: targets[0]) as moving:
        client = _client(moving)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        targets.pop(0)  # the endpoint "moved" (as a managed Redis' DNS name does)
        assert client.ping()
        client.close()
