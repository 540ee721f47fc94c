"""A gateway's waiting callers across a failover: a lost message is reported, an unconfirmed
reply (redis_durability replica) is not handed out."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.connection import connect
from cluster.errors import MessageLost
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.replies import ReplyChannel
from cluster.settings import ClusterSettings
from coordinator.http.gateway import Gateway
from tests.support.sentinel_topology import ReplicatedRedis, start_replicated_redis, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    started = start_replicated_redis(tmp_path)
    yield started
    started.stop()


def test_a_wait_for_a_message_the_failover_lost_ends_with_message_lost(
    pair: ReplicatedRedis, namespace: str
) -> None:
    settings = ClusterSettings(redis_url=pair.url, namespace=namespace)
    keyspace = Keyspace(namespace)
    client = connect(pair.url)
    # A worker that is registered but never claims: accepted messages stay unanswered.
    RedisMembership(client, keyspace, heartbeat_ttl=60).register(
        "w1", host="test", pid=1, queue=keyspace.worker_queue("w1")
    )
    client.close()

    async def scenario() -> tuple[object, object, float]:
        gateway = Gateway.open(settings)
        try:
            await gateway.submit("s1", "kept", message_id="m0", strategy="enqueue", attrs={})
            pair.wait_synced()  # the replica has m0 ...
            pair.cut_replication()  # ... and is promoted before m1 reaches it
            await gateway.submit("s2", "lost", message_id="m1", strategy="enqueue", attrs={})
            kept = asyncio.create_task(gateway.wait_reply("s1", "m0", 5.0))
            lost = asyncio.create_task(gateway.wait_reply("s2", "m1", 30.0))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.to_thread(_fail_over, pair)
            results = await asyncio.gather(kept, lost, return_exceptions=True)
            return results[0], results[1], time.monotonic() - started
        finally:
            await gateway.close()

    kept, lost, took = asyncio.run(scenario())
    assert isinstance(lost, MessageLost) and "same message id" in str(lost)
    assert took < 8.0  # told within seconds, not at its 30 s timeout
    assert kept is None  # still known after the failover: it just was not answered in time


def _fail_over(pair: ReplicatedRedis) -> None:
    pair.demote_primary()
    old = pair.primary.client()
    try:
        wait_until(lambda: old.info("replication").get("master_link_status") == "up")
    finally:
        old.close()


def test_with_durability_replica_a_reply_no_replica_confirmed_is_not_handed_out(
    pair: ReplicatedRedis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    replies = ReplyChannel(connect(pair.url), keyspace, reply_ttl=60)
    durable = ClusterSettings(
        redis_url=pair.url,
        namespace=namespace,
        redis_durability="replica",
        redis_durability_timeout=1000,  # a loaded machine still confirms in time
    )

    async def wait(settings: ClusterSettings, message_id: str) -> object:
        gateway = Gateway.open(settings)
        try:
            return await gateway.wait_reply("s1", message_id, 2.0)
        finally:
            await gateway.close()

    replies.push("s1", "m1", {"ok": True, "text": "confirmed"})
    assert asyncio.run(wait(durable, "m1")) == {"ok": True, "text": "confirmed"}
    pair.cut_replication()  # from now on no replica confirms anything
    replies.push("s1", "m2", {"ok": True, "text": "unconfirmed"})
    assert asyncio.run(wait(durable, "m2")) is None  # a failover could still lose it
    plain = dataclasses.replace(durable, redis_durability="none")
    assert asyncio.run(wait(plain, "m2")) == {"ok": True, "text": "unconfirmed"}  # kept for it
