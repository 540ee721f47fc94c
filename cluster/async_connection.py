"""asyncio Redis clients from the same URLs as :func:`cluster.connection.connect`.

The HTTP gateway waits on Redis with asyncio; it must reach the same Redis
the same way as everything else: ``fakeredis://NAME`` (the process' embedded
server), ``redis://``/``rediss://``/``unix://``, and ``redis+sentinel://``
(redis-py's asyncio Sentinel client, which asks the Sentinels again after a
failover). A ``READONLY`` answer from a demoted primary drops the connection
so the next one goes to the new primary (:mod:`cluster.primary_connections`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import fakeredis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel

from cluster.connection import EMBEDDED_SCHEME, embedded_server, sentinel_connection_options
from cluster.errors import ConfigError
from cluster.primary_connections import (
    AsyncBlockingSentinelPool,
    AsyncPrimaryConnection,
    AsyncPrimarySSLConnection,
    AsyncSentinelPool,
    failover_retry_async,
)
from cluster.sentinel_url import is_sentinel_url, parse_sentinel_url
from cluster.settings import redact_url, unescaped_password_problem

__all__ = ["connect_async"]


def connect_async(
    url: str,
    *,
    socket_timeout: float,
    max_connections: int | None = None,
    client_name: str | None = None,
) -> aioredis.Redis:
    """An asyncio client for ``url`` (bytes replies).

    Args:
        url: A Redis URL (see :mod:`cluster.connection`).
        socket_timeout: Seconds a reply may take.
        max_connections: Most connections it opens; a caller that finds them
            all busy waits for one (``None``: redis-py's default pool).
        client_name: ``CLIENT SETNAME`` of its connections.

    Raises:
        ConfigError: the URL is malformed or its scheme unknown.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == EMBEDDED_SCHEME:
        parts = urlsplit(url)
        server = (parts.netloc + parts.path).strip("/") or "default"
        embedded: aioredis.Redis = fakeredis.FakeAsyncRedis(server=embedded_server(server))
        return embedded
    problem = unescaped_password_problem(url)
    if problem:
        raise ConfigError(f"invalid Redis URL: {problem}")
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "decode_responses": False,
        "client_name": client_name,
        "retry": failover_retry_async(),
    }
    if is_sentinel_url(url):
        return _sentinel_client(url, options, max_connections)
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            "Redis URL scheme must be redis://, rediss://, redis+sentinel://, "
            f"rediss+sentinel://, unix:// or fakeredis://, got {redact_url(url)!r}"
        )
    if scheme != "unix":
        options["connection_class"] = (
            AsyncPrimarySSLConnection if scheme == "rediss" else AsyncPrimaryConnection
        )
    if max_connections is None:
        made: aioredis.Redis = aioredis.Redis.from_pool(
            aioredis.ConnectionPool.from_url(url, **options)
        )
        return made
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=None, **options
    )
    bounded: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return bounded


def _sentinel_client(
    url: str, options: dict[str, Any], max_connections: int | None
) -> aioredis.Redis:
    target = parse_sentinel_url(url, shown=redact_url(url))
    split = sentinel_connection_options(target, options)
    sentinel = aiosentinel.Sentinel(target.sentinels, sentinel_kwargs=split["sentinel"])
    primary = split["primary"]
    if max_connections is None:
        made: aioredis.Redis = sentinel.master_for(
            target.service, connection_pool_class=AsyncSentinelPool, **primary
        )
        return made
    primary.update(max_connections=max_connections, timeout=None)
    bounded: aioredis.Redis = sentinel.master_for(
        target.service, connection_pool_class=AsyncBlockingSentinelPool, **primary
    )
    return bounded
