"""What the HTTP app talks to: the coordinator for accepting messages, async Redis for waiting.

Accepting a message (validate, route, enqueue in one script; recover a
stranded job's worker) is the Python :class:`~coordinator.ingress.Coordinator`,
run on a bounded pool of threads: one short Redis script per message, and
one implementation of routing for every ingress. Everything that waits, the
reply of a turn (``BLPOP``) and its event stream (``XREAD BLOCK``), uses
``redis.asyncio``, so a thousand callers waiting for their turns hold a
thousand sockets, not a thousand threads.

Nothing here keeps state between requests: the reply list, the event stream
and the session all live in Redis, so any number of gateway instances serve
the same cluster and a client may reconnect to any of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import fakeredis
import redis
import redis.asyncio as aioredis

from cluster.connection import EMBEDDED_SCHEME, embedded_server
from cluster.errors import InvalidMessage
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.redis_text import text
from cluster.serialization import unpack
from cluster.settings import ClusterSettings
from cluster.tenants import TenantLimits, TenantStore, limits_by_tenant
from coordinator.ingress import Coordinator, TurnHandle

__all__ = ["EVENT_ID_RE", "Gateway", "async_client"]

T = TypeVar("T")

# Longest server-side block of one read; the socket waits a little longer.
BLOCK_SLICE = 5.0
_SOCKET_TIMEOUT = BLOCK_SLICE + 5.0

EVENT_ID_RE = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
"""What a ``Last-Event-ID`` may be: a Redis stream entry id."""


def async_client(url: str) -> aioredis.Redis:
    """An asyncio Redis client for ``url`` (``fakeredis://NAME``: the embedded server)."""
    if url.startswith(f"{EMBEDDED_SCHEME}://"):
        parts = urlsplit(url)
        name = (parts.netloc + parts.path).strip("/") or "default"
        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=embedded_server(name))
        return client
    made: aioredis.Redis = aioredis.Redis.from_url(
        url, socket_timeout=_SOCKET_TIMEOUT, decode_responses=False
    )
    return made


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

    @classmethod
    def open(cls, settings: ClusterSettings) -> Gateway:
        """Connect to the cluster of ``settings`` (no Redis round trip needed yet)."""
        return cls(
            settings=settings,
            coordinator=Coordinator(settings=settings),
            client=async_client(settings.redis_url),
        )

    def limits_for(self, tenant: str) -> TenantLimits:
        """A tenant's limits: its ``tenant_limits`` entry, else the cluster's defaults."""
        return self._tenant_limits.get(tenant, self._default_limits)

    async def close(self) -> None:
        """Close every connection."""
        await self.client.aclose()
        await self.run(self.coordinator.close)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call of the coordinator's on the gateway's threads."""
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
        self, session_key: str, message_id: str, timeout: float
    ) -> dict[str, Any] | None:
        """Pop a message's reply, waiting up to ``timeout`` seconds (``None``: none came)."""
        key = self.keyspace.reply_list(session_key, message_id)
        left = timeout
        with anyio.move_on_after(timeout):
            while left > 0:
                block = max(1, int(min(BLOCK_SLICE, left)))
                popped = cast(Any, await self.client.blpop([key], timeout=block))
                if popped is not None:
                    return _decode_reply(popped[1], message_id)
                left -= block
        return None

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

    async def read_events(
        self, session_key: str, message_id: str, after: str, block: float
    ) -> list[tuple[str, bytes]]:
        """Events of a message's stream after entry ``after``, waiting up to ``block`` seconds."""
        key = self.keyspace.turn_stream(session_key, message_id)
        found = cast(
            Any, await self.client.xread({key: after}, count=256, block=max(1, int(block * 1000)))
        )
        events: list[tuple[str, bytes]] = []
        for _stream, entries in found or ():
            for entry_id, fields in entries:
                ident = text(entry_id)
                events.append((ident, fields.get(b"e") or fields.get("e") or b"{}"))
        return events

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
