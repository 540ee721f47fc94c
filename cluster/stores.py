"""The Redis stores that route, queue, recover and answer turns, built once from the settings.

A worker (:class:`worker.process.WorkerProcess`) and the coordinator
(:class:`coordinator.ingress.Coordinator`) both route sessions, enqueue or
claim turns, recover dead workers and carry replies; :func:`build_stores`
wires those stores the same way for both. The caller owns the clients: a
worker claims turns on its blocking client and pushes replies on the other,
the coordinator enqueues on its plain client and waits for replies on the
blocking one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis

from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.membership import RedisMembership
from cluster.ownership import RedisOwnershipStore
from cluster.placement import Placement
from cluster.recovery import Recovery, RecoveryReport
from cluster.settings import ClusterSettings
from cluster.transport import ReplyChannel, TurnQueue

__all__ = ["ClusterStores", "build_stores"]

# Longest a cached live-worker set guides placement (seconds; the heartbeat interval if shorter).
PLACEMENT_REFRESH = 0.5


@dataclass(frozen=True)
class ClusterStores:
    """The shared stores of one process (see :func:`build_stores`)."""

    keyspace: Keyspace
    membership: RedisMembership
    ownership: RedisOwnershipStore
    placement: Placement
    leases: RedisLeaseStore
    queue: TurnQueue
    replies: ReplyChannel
    recovery: Recovery


def build_stores(
    settings: ClusterSettings,
    *,
    client: redis.Redis,
    queue_client: redis.Redis,
    reply_client: redis.Redis,
    on_recovered: Callable[[RecoveryReport], None] | None = None,
) -> ClusterStores:
    """Build the stores of ``settings.namespace`` on the caller's clients.

    Args:
        settings: TTLs, timeouts and the namespace.
        client: For membership, ownership, leases and recovery.
        queue_client: For the turn queue (a worker's blocking claims need a
            client whose socket timeout exceeds the claim's block).
        reply_client: For the reply lists (a coordinator's blocking waits).
        on_recovered: Told of each dead worker this process recovered (metrics).
    """
    keyspace = Keyspace(settings.namespace)
    membership = RedisMembership(client, keyspace, heartbeat_ttl=settings.heartbeat_ttl)
    ownership = RedisOwnershipStore(client, keyspace)
    placement = Placement(
        membership=membership,
        ownership=ownership,
        refresh_interval=min(PLACEMENT_REFRESH, settings.heartbeat_interval),
    )
    durability = settings.durability()
    leases = RedisLeaseStore(client, keyspace, durability=durability)
    queue = TurnQueue(
        queue_client,
        keyspace,
        job_timeout=settings.turn_timeout,
        result_ttl=settings.reply_ttl,
        durability=durability,
    )
    return ClusterStores(
        keyspace=keyspace,
        membership=membership,
        ownership=ownership,
        placement=placement,
        leases=leases,
        queue=queue,
        replies=ReplyChannel(
            reply_client, keyspace, reply_ttl=settings.reply_ttl, durability=durability
        ),
        recovery=Recovery(
            client=client,
            keyspace=keyspace,
            membership=membership,
            placement=placement,
            queue=queue,
            leases=leases,
            on_recovered=on_recovered,
        ),
    )
