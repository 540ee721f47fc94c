"""EmbeddedCluster owns its workers: they run as many turns at once as a worker
process does, and a start that fails part-way leaves none running."""

from __future__ import annotations

import dataclasses

import pytest

from cluster.connection import connect
from cluster.errors import WorkerIdInUse
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.settings import ClusterSettings
from coordinator.embedded import EmbeddedCluster


def test_a_start_that_fails_part_way_stops_the_workers_it_had_started() -> None:
    cluster = EmbeddedCluster(workers=3, concurrency=2)
    client = connect(cluster.settings.redis_url)  # keeps the embedded server's data readable
    keyspace = Keyspace(cluster.settings.namespace)
    membership = RedisMembership(client, keyspace, heartbeat_ttl=cluster.settings.heartbeat_ttl)
    # Another live process holds the second worker's id: that worker cannot start.
    membership.register(
        "embedded-2", host="elsewhere", pid=4242, queue=keyspace.worker_queue("embedded-2")
    )
    with pytest.raises(WorkerIdInUse, match="embedded-2"):
        cluster.start()
    live = {info.worker_id for info in membership.live_workers()}
    assert live == {"embedded-2"}, "the worker started before the failure deregistered"
    assert not any(w.claims.is_alive() for w in cluster.workers), "no worker claims turns"
    client.close()


def test_embedded_workers_take_the_concurrency_of_the_settings() -> None:
    default = EmbeddedCluster(workers=1)
    assert [w.executor.concurrency for w in default.workers] == [ClusterSettings().concurrency]
    settings = dataclasses.replace(ClusterSettings(), concurrency=5)
    configured = EmbeddedCluster(workers=2, settings=settings)
    assert [w.executor.concurrency for w in configured.workers] == [5, 5]
    assert EmbeddedCluster(workers=1, concurrency=3).workers[0].executor.concurrency == 3
