"""A waiting caller whose message a Redis failover lost is told so, instead of waiting forever.

With ``redis_durability: none`` a failover may promote a replica that never
got a message the old primary accepted: no worker will ever answer it, and
its caller would wait until its timeout and then retry blindly. The gateway
notices a failover by the primary's replication id (``INFO replication``,
read at most once a second for the whole process by :class:`PrimaryWatch`).
After one, each waiting caller checks once whether Redis still knows its
message (its job, its stored reply or its reply list); a message found
nowhere ends the wait with :class:`~cluster.errors.MessageLost` (503
``message_lost`` with ``Retry-After``): resubmit it with the same message id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from cluster.errors import MessageLost
from cluster.jobs import job_id_for
from cluster.keys import Keyspace
from cluster.rq_format import RqFormat

__all__ = ["PrimaryWatch", "check_not_lost"]

CHECK_INTERVAL = 1.0
"""Least seconds between two reads of the primary's replication id."""


class PrimaryWatch:
    """The replication id of the Redis primary, as this process last read it."""

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
        self._interval = interval
        self._clock = clock
        self._replid = ""
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        """The primary's replication id (``""`` where Redis cannot say, e.g. embedded)."""
        async with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._interval:
                return self._replid
            self._read_at = now
            try:
                info = await self._client.info("replication")
            except redis.ResponseError:  # INFO refused (the embedded server): no failovers
                return self._replid
            except (redis.RedisError, OSError):
                return self._replid  # unreachable now: judged at the next read
            self._replid = str(info.get("master_replid", ""))
            return self._replid


async def check_not_lost(
    client: aioredis.Redis, keyspace: Keyspace, session_key: str, message_id: str
) -> None:
    """Raise :class:`MessageLost` when Redis knows nothing of an accepted message any more.

    A message is known while its job hash exists (queued, running or ended:
    kept ``reply_ttl``), its reply is stored (kept for the retention), or its
    reply list holds the reply. An unreachable Redis proves nothing: the
    caller keeps waiting.
    """
    job_key = RqFormat.job_key(job_id_for(keyspace.namespace, session_key, message_id))
    pipe = client.pipeline(transaction=False)
    pipe.exists(job_key)
    pipe.hexists(keyspace.session(session_key).replies, message_id)
    pipe.exists(keyspace.reply_list(session_key, message_id))
    try:
        found = await pipe.execute()
    except (redis.RedisError, OSError):
        return
    if any(found):
        return
    raise MessageLost(
        f"message {message_id!r} of session {session_key!r} was accepted, but a Redis failover "
        "lost it before it was answered (the promoted replica never got it; "
        "redis_durability none): resubmit it with the same message id"
    )
