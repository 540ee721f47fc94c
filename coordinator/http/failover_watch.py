"""The HTTP gateway's asyncio shell of :mod:`cluster.lost_messages`.

A waiting caller whose message a Redis failover lost is told so (503
``message_lost`` with ``Retry-After``) instead of waiting forever: one task
per gateway process (:class:`FailoverWatch`) reads the primary's
replication id once a second while callers wait (:class:`PrimaryWatch`);
when it changed, each waiting caller is woken and checks whether Redis
still knows its message (:func:`check_not_lost`), and again every
:data:`~cluster.lost_messages.RECHECK_INTERVAL` seconds for
:data:`~cluster.lost_messages.SETTLE_WINDOW` seconds after it
(:class:`~cluster.lost_messages.AfterFailover`: a message found once can
still be lost then). Between failovers a waiting caller costs the watch
nothing.
When to read, what to read and how to judge it are the Python API's
(:mod:`cluster.lost_messages`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from cluster.keys import Keyspace
from cluster.lost_messages import (
    CHECK_INTERVAL,
    AfterFailover,
    PrimaryReads,
    judge_probe,
    queue_probe,
)
from coordinator.http.stopping import stop_task
from coordinator.http.waiters import Waiters

__all__ = ["FailoverWatch", "PrimaryWatch", "check_not_lost"]

log = logging.getLogger("coordinator.http.failover_watch")


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


class FailoverWatch:
    """One task per process: after a failover, every waiting caller with a check runs it."""

    def __init__(
        self,
        primary: PrimaryWatch,
        waiters: Waiters,
        *,
        interval: float = CHECK_INTERVAL,
        after: AfterFailover | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Watch ``primary`` for the reply waits of ``waiters`` that asked for a check.

        Args:
            primary: Reads the replication id (at most once per ``interval``).
            waiters: The gateway's waiting callers (:meth:`Waiters.failed_over` wakes them).
            interval: Seconds between two looks while callers wait.
            after: When callers check (at a failover, then again for a while).
            clock: Monotonic seconds.
        """
        self._primary = primary
        self._waiters = waiters
        self._interval = interval
        self._after = after or AfterFailover()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching (in the running loop); a second call does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="gateway-failover-watch")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _watch(self) -> None:
        # The id read last is kept while nobody waits: a caller that comes after a failover
        # nobody saw checks once (a probe too many at worst, never a loss unnoticed).
        while True:
            if self._waiters.checked:
                try:
                    primary = await self._primary.current()
                    now = self._clock()
                    if self._after.failed_over(primary, now) or self._after.recheck_due(now):
                        self._waiters.failed_over()
                except Exception:  # a bug must not stop the watch: log, go on
                    log.exception("failover watch: looking at the primary failed")
            await asyncio.sleep(self._interval)
