"""The Python API's waiting callers across a failover: a message the failover lost is reported
(``MessageLost``: resubmit it), one the promoted replica has keeps waiting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.connection import connect
from cluster.errors import TurnTimeout
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.settings import ClusterSettings
from coordinator.ingress import Coordinator
from tests.support.lost_messages import reported_lost
from tests.support.sentinel_topology import ReplicatedRedis, start_replicated_redis, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    started = start_replicated_redis(tmp_path)
    yield started
    started.stop()


def test_a_poll_for_a_message_the_failover_lost_raises_message_lost(
    pair: ReplicatedRedis, namespace: str
) -> None:
    keyspace = Keyspace(namespace)
    client = connect(pair.url)
    # A worker that is registered but never claims: accepted messages stay unanswered.
    RedisMembership(client, keyspace, heartbeat_ttl=60).register(
        "w1", host="test", pid=1, queue=keyspace.worker_queue("w1")
    )
    client.close()
    coordinator = Coordinator(settings=ClusterSettings(redis_url=pair.url, namespace=namespace))
    try:
        kept = coordinator.submit_async("s1", "kept", message_id="m0")
        pair.wait_synced()  # the replica has m0 ...
        pair.cut_replication()  # ... and is promoted before m1 reaches it
        lost = coordinator.submit_async("s2", "lost", message_id="m1")
        with pytest.raises(TurnTimeout):  # no failover yet: just not answered
            lost.result(timeout=0)
        _fail_over(pair)
        # The caller polls (as a chat loop does); within seconds it hears the message is gone.
        wait_until(lambda: reported_lost(lost), timeout=8.0, what="MessageLost for m1")
        with pytest.raises(TurnTimeout):  # m0 survived the failover: still waiting for its turn
            kept.result(timeout=0)
    finally:
        coordinator.close()
    # The caller resubmits the same id to the new primary (a Sentinel URL follows it by itself).
    promoted = Coordinator(
        settings=ClusterSettings(redis_url=pair.replica.url, namespace=namespace)
    )
    try:
        again = promoted.submit_async("s2", "lost", message_id="m1")
        assert again.status == "queued"  # accepted afresh: it will be answered
        with pytest.raises(TurnTimeout):
            again.result(timeout=0)
    finally:
        promoted.close()


def _fail_over(pair: ReplicatedRedis) -> None:
    pair.demote_primary()
    old = pair.primary.client()
    try:
        wait_until(lambda: old.info("replication").get("master_link_status") == "up")
    finally:
        old.close()
