"""Connections that let go of a Redis primary demoted by a failover, sync and asyncio.

After a failover the old primary, if it is still up, becomes a replica and
answers every write with ``READONLY``. A plain redis-py connection would keep
talking to it forever (the socket is fine). The connection classes here turn
that reply into a disconnect plus ``ConnectionError``, so the next attempt
(the client's retry, or the caller's next command) opens a new socket: to a
fresh DNS resolution of the URL's host for ``redis://``/``rediss://`` (a
managed endpoint whose name moves to the new primary), or to the primary the
Sentinels name now for ``redis+sentinel://`` (redis-py's
``SentinelManagedConnection`` already does this), and a Sentinel client asks
the Sentinels again at least every second, so it leaves a replaced primary
that Sentinel has not demoted yet (:class:`SentinelPool`).

:data:`FAILOVER_RETRY` is the retry every client of :mod:`cluster.connection`
gets: one more try after a connection error, which is what carries a write
from a demoted primary to the new one without the caller seeing an error.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as aioconnection
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

__all__ = [
    "AsyncBlockingSentinelPool",
    "AsyncPrimaryConnection",
    "AsyncPrimarySSLConnection",
    "AsyncSentinelPool",
    "BlockingSentinelPool",
    "DEMOTED",
    "PrimaryConnection",
    "PrimarySSLConnection",
    "RECHECK_SECONDS",
    "SentinelPool",
    "failover_retry",
    "failover_retry_async",
]

DEMOTED = (
    "the Redis server answered READONLY: a failover made it a replica; "
    "reconnecting to the current primary"
)
"""The ``ConnectionError`` message when a primary was demoted under a connection."""

RECHECK_SECONDS = 1.0
"""Longest a Sentinel client goes without asking the Sentinels where the primary is."""


def failover_retry() -> Retry:
    """One more try after a connection error, after 50-500 ms (a new Retry per client)."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.05, cap=0.5),
        retries=1,
        supported_errors=(redis.ConnectionError,),
    )


def failover_retry_async() -> AsyncRetry:
    """:func:`failover_retry` for asyncio clients."""
    return AsyncRetry(
        ExponentialWithJitterBackoff(base=0.05, cap=0.5),
        retries=1,
        supported_errors=(redis.ConnectionError,),
    )


class PrimaryConnection(redis.Connection):
    """A TCP connection that drops a primary turned replica (``READONLY``)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; a ``READONLY`` one disconnects and raises ``ConnectionError``."""
        try:
            return super().read_response(*args, **kwargs)
        except redis.ReadOnlyError:
            self.disconnect()  # type: ignore[no-untyped-call]
            raise redis.ConnectionError(DEMOTED) from None


class PrimarySSLConnection(PrimaryConnection, redis.SSLConnection):
    """:class:`PrimaryConnection` over TLS (``rediss://``)."""


class AsyncPrimaryConnection(aioredis.Connection):
    """The asyncio :class:`PrimaryConnection`."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read a reply; a ``READONLY`` one disconnects and raises ``ConnectionError``."""
        try:
            return await super().read_response(*args, **kwargs)
        except redis.ReadOnlyError:
            await self.disconnect()
            raise redis.ConnectionError(DEMOTED) from None


class AsyncPrimarySSLConnection(AsyncPrimaryConnection, aioconnection.SSLConnection):
    """:class:`AsyncPrimaryConnection` over TLS."""


class SentinelPool(redis.sentinel.SentinelConnectionPool):
    """Sentinel's pool, asking the Sentinels where the primary is at least every second.

    redis-py asks only when it opens a connection, so connections to a
    primary that Sentinel replaced but has not demoted yet (it does at its
    next check of that server, up to 10 s later) would keep writing to it.
    Here the first connection taken after :data:`RECHECK_SECONDS` asks again;
    when the primary moved, idle connections are closed and a connection to
    the old one is reopened to the new one.
    """

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connection to the primary the Sentinels name now (checked at most every second)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            try:
                self.get_master_address()  # type: ignore[no-untyped-call]
            except redis.ConnectionError:
                pass  # no Sentinel answers: keep the connections we have
        connection = super().get_connection(*args, **kwargs)
        address = self.master_address
        if address is not None and (connection.host, connection.port) != tuple(address):
            # It reconnects to the new primary at its next command.
            connection.disconnect()  # type: ignore[no-untyped-call]
        return connection

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the connections; when closing them all, the Sentinel clients' too.

        redis-py also calls this, with ``inuse_connections=False``, from any
        thread that learns the primary moved: the Sentinel clients, shared by
        every thread of the pool, stay open then, or another thread's Sentinel
        query would lose its socket mid-reply (``'NoneType' object has no
        attribute 'readline'``, failing that thread's command).
        """
        super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.close()


class BlockingSentinelPool(SentinelPool, redis.BlockingConnectionPool):
    """:class:`SentinelPool` with a cap: a thread finding every connection busy waits for one."""


class AsyncSentinelPool(aiosentinel.SentinelConnectionPool):
    """The asyncio :class:`SentinelPool`."""

    _next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connection to the primary the Sentinels name now (checked at most every second)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK_SECONDS
            try:
                await self.get_master_address()  # type: ignore[no-untyped-call]
            except redis.ConnectionError:
                pass
        connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        address = self.master_address
        if address is not None and (connection.host, connection.port) != tuple(address):
            await connection.disconnect()
        return connection

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the connections; when closing them all, the Sentinel clients' too.

        As :meth:`SentinelPool.disconnect`: a new primary learned by one task
        leaves the Sentinel query another task has in flight alone.
        """
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


class AsyncBlockingSentinelPool(AsyncSentinelPool, aioconnection.BlockingConnectionPool):
    """The asyncio :class:`BlockingSentinelPool`."""
