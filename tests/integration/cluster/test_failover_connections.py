"""Clients find the new primary by themselves after a failover: Sentinel URLs and moving DNS."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cluster.async_connection import connect_async
from cluster.connection import connect
from cluster.primary_connections import DEMOTED
from tests.support.sentinel_topology import (
    SERVICE,
    ReplicatedRedis,
    start_replicated_redis,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def with_sentinel(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    pair = start_replicated_redis(tmp_path, sentinel=True)
    yield pair
    pair.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    started = start_replicated_redis(tmp_path)
    yield started
    started.stop()


def _port_of_primary(client: redis.Redis) -> int:
    return int(client.config_get("port")["port"])


def test_a_sentinel_client_writes_to_the_new_primary_after_a_failover(
    with_sentinel: ReplicatedRedis,
) -> None:
    client = connect(with_sentinel.sentinel_url, pool_size=4)
    try:
        client.set("before", b"1")
        assert _port_of_primary(client) == with_sentinel.primary.port
        with_sentinel.wait_synced()
        sentinel = redis.Redis(port=with_sentinel.sentinel_port)
        sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        sentinel.close()
        replica = with_sentinel.replica.client()
        wait_until(lambda: replica.info("replication")["role"] == "master", what="the promotion")
        replica.close()
        # No reconfiguration: the same client's next writes reach the promoted replica.
        wait_until(lambda: _write_lands(client, with_sentinel.replica.port), what="re-resolve")
        assert client.get("before") == b"1"
    finally:
        client.close()


def _write_lands(client: redis.Redis, port: int) -> bool:
    try:
        client.set("after", b"1")
    except redis.ConnectionError:
        return False
    return _port_of_primary(client) == port


def test_a_thread_learning_of_the_new_primary_leaves_another_threads_sentinel_query_alone(
    with_sentinel: ReplicatedRedis,
) -> None:
    client = connect(with_sentinel.sentinel_url, pool_size=4)
    try:
        client.set("before", b"1")
        with_sentinel.wait_synced()
        pool: Any = client.connection_pool
        sentinel = redis.Redis(port=with_sentinel.sentinel_port)
        sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        sentinel.close()
        wait_until(
            lambda: pool.sentinel_manager.discover_master(SERVICE)[1] == with_sentinel.replica.port,
            what="the Sentinel to name the promoted replica",
        )
        # Thread A asks the Sentinels where the primary is: its query is sent, not read yet ...
        shared = pool.sentinel_manager.sentinels[0]
        in_flight = shared.connection_pool.get_connection()
        in_flight.send_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        # ... when thread B, taking a connection, learns the primary moved (what the pool
        # does at its check every second; redis-py then drops the idle connections).
        assert int(pool.get_master_address()[1]) == with_sentinel.replica.port
        # A's reply still arrives: before the fix its socket was closed under it and this
        # failed with "'NoneType' object has no attribute 'readline'", failing A's command.
        _host, port = in_flight.read_response()
        shared.connection_pool.release(in_flight)
        assert int(port) == with_sentinel.replica.port
        wait_until(lambda: _write_lands(client, with_sentinel.replica.port), what="re-resolve")
    finally:
        client.close()


def test_the_async_sentinel_client_follows_the_failover_too(
    with_sentinel: ReplicatedRedis,
) -> None:
    async def scenario() -> None:
        client = connect_async(with_sentinel.sentinel_url, socket_timeout=5, max_connections=3)
        try:
            await client.set("k", b"1")
            assert int((await client.config_get("port"))["port"]) == with_sentinel.primary.port
            sentinel = redis.Redis(port=with_sentinel.sentinel_port)
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
            sentinel.close()
            for _ in range(500):
                try:
                    await client.set("k2", b"1")
                    port = int((await client.config_get("port"))["port"])
                    if port == with_sentinel.replica.port:
                        return
                except redis.ConnectionError:
                    pass
                await asyncio.sleep(0.02)
            pytest.fail("the asyncio Sentinel client never reached the promoted replica")
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_demoted_primary_is_dropped_and_a_moved_dns_name_followed(
    pair: ReplicatedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A managed endpoint: one DNS name that the provider points at the new primary.
    points_to = {"port": pair.primary.port}
    resolve = socket.getaddrinfo

    def managed_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "redis.managed.test":
            return resolve("127.0.0.1", points_to["port"], *args, **kwargs)
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", managed_dns)
    client = connect("redis://redis.managed.test:6379/0")
    try:
        client.set("k", b"1")
        first_id = client.client_id()
        pair.wait_synced()
        pair.cut_replication()  # the replica is promoted ...
        pair.demote_primary()  # ... and the old primary follows it, read-only
        old = pair.primary.client()
        wait_until(lambda: old.info("replication")["role"] == "slave", what="the demotion")
        old.close()
        with pytest.raises(redis.ConnectionError, match="READONLY"):
            client.set("k", b"2")  # DNS still names the old primary: the retry finds it read-only
        points_to["port"] = pair.replica.port  # the provider moves the name
        client.set("k", b"3")
        assert client.client_id() != first_id
        assert _port_of_primary(client) == pair.replica.port
        assert client.get("k") == b"3"
    finally:
        client.close()


def test_readonly_becomes_a_connection_error_naming_the_failover(pair: ReplicatedRedis) -> None:
    replica = connect(pair.replica.url)
    try:
        with pytest.raises(redis.ConnectionError) as err:
            replica.eval("return redis.call('SET', KEYS[1], '1')", 1, "k")
        assert str(err.value) == DEMOTED
    finally:
        replica.close()
