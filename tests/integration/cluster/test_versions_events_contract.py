"""Config/registry versions and the event bus, on fakeredis and real Redis."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import pytest
import redis

from cluster.errors import ConfigError, PayloadTooLarge
from cluster.events import EventBus
from cluster.keys import Keyspace
from cluster.versions import RedisVersionStore
from tests.support.pubsub import wait_subscribed

WAIT = 5.0


def _collect(
    client: redis.Redis, bus: EventBus, **kwargs: Any
) -> tuple[Any, queue.Queue[dict[str, Any]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    subscriber = bus.subscribe(received.put, **kwargs)
    assert wait_subscribed(client, bus.channel, WAIT)
    return subscriber, received


def test_publish_config_stores_bumps_and_announces(client: redis.Redis, keyspace: Keyspace) -> None:
    store = RedisVersionStore(client, keyspace)
    assert store.current_config() == (0, {}) and store.versions() == (0, 0)
    subscriber, received = _collect(client, EventBus(client, keyspace))
    try:
        assert store.publish_config({"model": {"name": "a"}}) == 1
        assert store.publish_config({"model": {"name": "b"}, "compression": {"enabled": True}}) == 2
        assert store.bump_registry_generation('mcp reload: "github"') == 1
        assert received.get(timeout=WAIT) == {"type": "config", "version": 1}
        assert received.get(timeout=WAIT) == {"type": "config", "version": 2}
        assert received.get(timeout=WAIT) == {
            "type": "registry",
            "generation": 1,
            "reason": 'mcp reload: "github"',
        }
    finally:
        subscriber.stop()
    assert not subscriber.running
    assert store.current_config() == (2, {"model": {"name": "b"}, "compression": {"enabled": True}})
    assert store.versions() == (2, 1)


def test_secrets_and_oversized_configs_never_reach_redis(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    store = RedisVersionStore(client, keyspace, max_config_bytes=200)
    with pytest.raises(ConfigError, match="environment"):
        store.publish_config({"model": {"api_key": "sk-live-123"}})
    with pytest.raises(PayloadTooLarge):
        store.publish_config({"x": "y" * 500})
    assert store.versions() == (0, 0)
    assert client.get(keyspace.config_doc()) is None


def test_subscriber_skips_malformed_events_and_survives_callback_errors(
    client: redis.Redis, keyspace: Keyspace, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus(client, keyspace)
    seen: queue.Queue[dict[str, Any]] = queue.Queue()

    def callback(event: dict[str, Any]) -> None:
        if event["type"] == "explode":
            raise RuntimeError("callback bug")
        seen.put(event)

    subscriber = bus.subscribe(callback)
    assert wait_subscribed(client, bus.channel, WAIT)
    try:
        with caplog.at_level(logging.WARNING, logger="cluster.events"):
            client.publish(bus.channel, b"not json")
            client.publish(bus.channel, b'{"no": "type"}')
            bus.publish({"type": "explode"})
            bus.publish({"type": "drain", "worker_id": "w1"})
            assert seen.get(timeout=WAIT) == {"type": "drain", "worker_id": "w1"}
        assert subscriber.running
        assert "malformed" in caplog.text and "callback raised" in caplog.text
    finally:
        subscriber.stop()


@pytest.mark.integration
def test_subscriber_reconnects_after_redis_drops_it(
    redis_client: redis.Redis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    bus = EventBus(redis_client, keyspace)
    reconnected = threading.Event()
    subscriber, received = _collect(
        redis_client, bus, on_reconnect=reconnected.set, backoff_initial=0.05
    )
    try:
        redis_client.client_kill_filter(_type="pubsub")
        assert reconnected.wait(WAIT)
        assert bus.publish({"type": "config", "version": 9}) == 1
        assert received.get(timeout=WAIT) == {"type": "config", "version": 9}
    finally:
        subscriber.stop()
    assert not subscriber.running


def test_a_publish_compared_with_an_old_version_changes_nothing(
    client: redis.Redis, keyspace: Keyspace
) -> None:
    """`config push` checks removals against the version it read; a push in between wins."""
    store = RedisVersionStore(client, keyspace)
    assert store.publish_config({"model": {"max_tokens": 1}}, expect_version=0) == 1
    assert store.publish_config({"model": {"max_tokens": 2}}) == 2  # someone else's push
    with pytest.raises(ConfigError, match=r"compared with version 1, now 2\); push again"):
        store.publish_config({"model": {"max_tokens": 3}}, expect_version=1)
    assert store.current_config() == (2, {"model": {"max_tokens": 2}})
    assert len(store.history()) == 2
