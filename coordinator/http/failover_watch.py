"""The HTTP gateway's asyncio shell of :mod:`cluster.lost_messages`.

A waiting caller whose message a Redis failover lost is told so (503
``message_lost`` with ``Retry-After``) instead of waiting forever: the
gateway reads the primary's replication id at most once a second for the
whole process (:class:`PrimaryWatch`); after a failover each waiting caller
checks once whether Redis still knows its message (:func:`check_not_lost`).
When to read, what to read and how to judge it are the Python API's
(:mod:`cluster.lost_messages`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from cluster.keys import Keyspace
from cluster.lost_messages import CHECK_INTERVAL, PrimaryReads, judge_probe, queue_probe

__all__ = ["PrimaryWatch", "check_not_lost"]


class PrimaryWatch:
    """The replication id of the Redis primary, as this process last read it (asyncio)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind to the gateway's asyncio client.

        Args:
            client: The asyncio Redis client.
            interval: Least seconds between two reads.
            clock: Monotonic seconds.
        """
        self._client = client
        self._clock = clock
        self._reads = PrimaryReads(interval)
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        """The primary's replication id (``""`` where Redis cannot say, e.g. embedded)."""
        async with self._lock:
            if not self._reads.due(self._clock()):
                return self._reads.replid
            try:
                info = await self._client.info("replication")
            except (redis.RedisError, OSError):  # refused (embedded) or unreachable: judged later
                return self._reads.replid
            return self._reads.record(info)


async def check_not_lost(
    client: aioredis.Redis, keyspace: Keyspace, session_key: str, message_id: str
) -> None:
    """Raise :class:`~cluster.errors.MessageLost` when Redis knows nothing of an accepted message.

    An unreachable Redis proves nothing: the caller keeps waiting.
    """
    pipe = client.pipeline(transaction=False)
    queue_probe(pipe, keyspace, session_key, message_id)
    try:
        found = await pipe.execute()
    except (redis.RedisError, OSError):
        return
    judge_probe(found, session_key, message_id)
