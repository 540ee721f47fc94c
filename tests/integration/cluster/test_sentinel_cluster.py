"""A worker process and a coordinator on redis+sentinel:// keep answering across a failover.

With ``redis_durability: replica``: the old primary stays writable until Sentinel
demotes it at its next check, so a turn may run there first; none of that
counts (no replica confirms it), and the message is answered from the new
primary, exactly once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster.connection import connect
from cluster.errors import ClusterUnavailable, NotReplicated, TurnTimeout
from coordinator.ingress import Coordinator
from tests.support.fleet import coordinator, fleet, user_texts
from tests.support.sentinel_topology import (
    SERVICE,
    ReplicatedRedis,
    start_replicated_redis,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    pair = start_replicated_redis(tmp_path / "redis", sentinel=True)
    yield pair
    pair.stop()


def _answer(c: Coordinator, session: str, text: str, message_id: str) -> None:
    """Submit until answered, always under the same message id (the failover may refuse some)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = c.submit(session, text, message_id=message_id, timeout=5)
            assert reply.raw.get("ok"), reply
            return
        except (ClusterUnavailable, NotReplicated, TurnTimeout, redis.ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_cluster_answers_through_sentinel_before_and_after_a_failover(
    topology: ReplicatedRedis, namespace: str, tmp_path: Path
) -> None:
    durable = {"AGENT_CLUSTER_REDIS_DURABILITY": "replica"}
    with fleet(topology.sentinel_url, namespace, tmp_path, **durable) as workers:
        workers.start("w1", wait=False)
        settings = dataclasses.replace(workers.settings(), redis_durability="replica")
        with coordinator(settings) as c:
            wait_until(lambda: len(c.membership.active_workers()) == 1, timeout=30)
            _answer(c, "s1", "before", "m1")
            sentinel = redis.Redis(port=topology.sentinel_port)
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
            sentinel.close()
            promoted = topology.replica.client()
            wait_until(lambda: promoted.info("replication")["role"] == "master", timeout=20)
            promoted.close()
            topology.demote_primary()  # what Sentinel does at its next check (up to 10 s later)
            # Nobody is told where the new primary is: worker and coordinator find it.
            _answer(c, "s1", "after", "m2")
    client = connect(topology.replica.url)
    try:
        assert user_texts(client, namespace, "s1") == ["before", "after"]
    finally:
        client.close()
