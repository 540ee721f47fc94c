"""What the HTTP app talks to: the coordinator for accepting messages, async Redis for waiting.

Accepting a message (validate, route, enqueue in one script; recover a
stranded job's worker) is the Python :class:`~coordinator.ingress.Coordinator`,
run on a bounded pool of threads: one short Redis script per message, and
one implementation of routing for every ingress. Everything that waits, the
reply of a turn and its event stream, goes through the process' one
:class:`~coordinator.http.waiters.Waiters`: one subscriber connection hears
the wake-up signals of exactly the replies and streams its callers wait on,
and one task reads what was signalled in batches, so ten thousand waiting
callers hold ten thousand sockets, not threads nor Redis connections, and
an idle one costs no Redis command. The process opens at most
``gateway_redis_connections`` Redis connections in all (a small pool for
accepting messages, the rest for everything asyncio, the subscriber
included), each named :func:`client_name` in ``CLIENT LIST``.

Nothing here keeps state between requests: the reply list, the event stream
and the session all live in Redis, so any number of gateway instances serve
the same cluster and a client may reconnect to any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import redis
import redis.asyncio as aioredis

from cluster.async_connection import connect_async
from cluster.connection import connect
from cluster.errors import InvalidMessage
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.serialization import unpack
from cluster.settings import ClusterSettings
from cluster.tenants import TenantLimits, TenantStore, limits_by_tenant
from coordinator.http.failover_watch import FailoverWatch, PrimaryWatch, check_not_lost
from coordinator.http.waiters import Hold, Wait, Waiters
from coordinator.ingress import Coordinator, TurnHandle

__all__ = ["EVENT_ID_RE", "Gateway", "async_client", "client_name"]

T = TypeVar("T")

# Seconds a reply of Redis may take (the waiters never block on a read).
_SOCKET_TIMEOUT = 10.0

EVENT_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
"""What a ``Last-Event-ID`` may be: a Redis stream entry id."""


# Share of gateway_redis_connections that accepts messages (on threads); the rest is asyncio's.
_SUBMIT_SHARE = 4


def client_name(namespace: str) -> str:
    """The ``CLIENT SETNAME`` of every Redis connection of this gateway process."""
    return f"{namespace}-gateway-{os.getpid()}"


def async_client(
    url: str, *, max_connections: int | None = None, name: str | None = None
) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` (any URL :mod:`cluster.async_connection` takes).

    Args:
        url: The Redis URL.
        max_connections: Most connections it opens; a caller that finds them
            all busy waits for one (``None``: redis-py's default pool).
        name: ``CLIENT SETNAME`` of its connections.
    """
    return connect_async(
        url, socket_timeout=_SOCKET_TIMEOUT, max_connections=max_connections, client_name=name
    )


def _decode_reply(raw: bytes, message_id: str) -> dict[str, Any]:
    try:
        value = unpack(raw)
    except ValueError as exc:
        raise InvalidMessage(f"reply for message {message_id!r} is not msgpack: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidMessage(f"reply for message {message_id!r} is not a map")
    return value


class Gateway:
    """The cluster as the HTTP handlers see it (one per app; shared by all requests)."""

    def __init__(
        self,
        *,
        settings: ClusterSettings,
        coordinator: Coordinator,
        client: aioredis.Redis,
        threads: int = 64,
    ) -> None:
        """Bind the pieces (see :meth:`open` to build them from settings).

        Args:
            settings: The cluster settings (namespace, timeouts, limits).
            coordinator: Accepts messages (its calls run on threads).
            client: The asyncio client for waiting and streaming.
            threads: Most coordinator calls running at once.
        """
        self.settings = settings
        self.keyspace = Keyspace(settings.namespace)
        self.coordinator = coordinator
        self.client = client
        self.tenants = TenantStore(coordinator.client, self.keyspace)
        self._default_limits = TenantLimits(
            requests_per_minute=settings.tenant_requests_per_minute,
            turns_in_flight=settings.tenant_turns_in_flight,
        )
        self._tenant_limits = limits_by_tenant(settings.tenant_limits)
        self._limiter = anyio.CapacityLimiter(threads)
        # Calls past the threads' number wait here, not in the limiter: a burst of arrivals
        # queues thousands of them, and a call waiting in anyio's queue holds ~4 KiB (with
        # its task), in this one ~1.5, freed once it ran but left as holes in the heap.
        self._turns = asyncio.Semaphore(threads)
        self.waiters = Waiters(
            client=client,
            max_waiting=settings.gateway_max_waiting,
            sweep_interval=settings.gateway_sweep_interval,
            reply_ttl=settings.reply_ttl,
            durability=settings.durability(),
        )
        self.primary = PrimaryWatch(client)
        self.failovers = FailoverWatch(self.primary, self.waiters)

    @classmethod
    def open(cls, settings: ClusterSettings) -> Gateway:
        """Connect to the cluster of ``settings`` (no Redis round trip needed yet).

        Of ``gateway_redis_connections``, a quarter (at least one) accepts
        messages on the coordinator's threads; the rest serve every waiting
        caller (one of them is the wake-up subscriber) and the handlers' own reads.
        """
        total = settings.gateway_redis_connections
        submit = max(1, total // _SUBMIT_SHARE)
        name = client_name(settings.namespace)
        sync_client = connect(settings.redis_url, pool_size=submit, client_name=name)
        return cls(
            settings=settings,
            # The gateway never blocks on the sync client: /stop's reply is read at once.
            coordinator=Coordinator(settings=settings, client=sync_client, blocking=sync_client),
            client=async_client(settings.redis_url, max_connections=total - submit, name=name),
        )

    def admit(self) -> Hold:
        """A place for one more waiting caller (raises ``GatewayFull`` past the limit)."""
        return self.waiters.admit()

    @contextlib.asynccontextmanager
    async def waiting_place(self) -> AsyncIterator[None]:
        """A waiting caller's place for a caller that cannot be refused (a bot's delivery).

        It counts against ``gateway_max_waiting`` like an HTTP caller; while
        the gateway is full it waits for a place instead of failing.
        """
        hold = await self.waiters.admit_when_room()
        try:
            yield
        finally:
            hold.release()

    def limits_for(self, tenant: str) -> TenantLimits:
        """A tenant's limits: its ``tenant_limits`` entry, else the cluster's defaults."""
        return self._tenant_limits.get(tenant, self._default_limits)

    async def close(self) -> None:
        """Stop the waiters, close every connection."""
        await self.failovers.close()
        await self.waiters.close()
        await self.client.aclose()
        await self.run(self.coordinator.close)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call of the coordinator's on the gateway's threads (the calls past
        their number wait their turn)."""
        async with self._turns:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def submit(
        self,
        session_key: str,
        text: str,
        *,
        message_id: str | None,
        strategy: str,
        attrs: dict[str, Any],
    ) -> TurnHandle:
        """Validate, route and enqueue a message (see ``Coordinator.submit_async``)."""

        def submit() -> TurnHandle:
            return self.coordinator.submit_async(
                session_key, text, message_id=message_id, strategy=strategy, **attrs
            )

        return await self.run(submit)

    async def wait_reply(
        self,
        session_key: str,
        message_id: str,
        timeout: float,
        *,
        gone: Callable[[], Awaitable[None]] | None = None,
    ) -> dict[str, Any] | None:
        """Pop a message's reply, waiting up to ``timeout`` seconds (``None``: none came).

        ``gone`` returns when the caller went away (it runs on the caller's own
        task); the wait ends then (``None``). After a Redis failover (the
        process' one :class:`~coordinator.http.failover_watch.FailoverWatch`
        saw the primary's replication id change) the wait checks once that
        Redis still knows the message.

        Raises:
            MessageLost: a failover lost the message (resubmit it, same id).
        """

        async def check() -> None:
            await check_not_lost(self.client, self.keyspace, session_key, message_id)

        self.failovers.start()
        key = self.keyspace.reply_list(session_key, message_id)
        raw = await self.waiters.reply(key, timeout, gone=gone, check=check)
        return None if raw is None else _decode_reply(raw, message_id)

    def watch_turn(self, session_key: str, message_id: str, *, after: str) -> Wait:
        """Wait on a message's reply and its event stream after entry ``after`` (``unwatch`` it)."""
        return self.waiters.watch(
            self.keyspace.reply_list(session_key, message_id),
            self.keyspace.turn_stream(session_key, message_id),
            after,
        )

    @staticmethod
    def decode_reply(raw: bytes, message_id: str) -> dict[str, Any]:
        """A reply as the worker wrote it (msgpack map).

        Raises:
            InvalidMessage: it is not a msgpack map.
        """
        return _decode_reply(raw, message_id)

    async def pop_reply(self, session_key: str, message_id: str) -> dict[str, Any] | None:
        """Take a message's reply if it has arrived, else read its stored reply (no wait).

        The stored reply (the session's ``replies`` hash, kept for the
        retention period) answers a caller whose reply list was already
        taken or expired, e.g. one that resumes long after the turn.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.lpop(self.keyspace.reply_list(session_key, message_id))
        pipe.hget(self.keyspace.session(session_key).replies, message_id)
        popped, stored = await pipe.execute()
        raw = popped if popped is not None else stored
        return None if raw is None else _decode_reply(raw, message_id)

    async def live_workers(self) -> int:
        """How many workers have a valid heartbeat (readiness)."""
        membership = RedisMembership(
            self.coordinator.client, self.keyspace, heartbeat_ttl=self.settings.heartbeat_ttl
        )
        return len(await self.run(membership.live_workers))

    async def ping(self) -> None:
        """Raise ``redis.RedisError`` when Redis does not answer."""
        if not await self.client.ping():
            raise redis.ConnectionError("PING was not answered")
