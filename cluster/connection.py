"""Redis clients from a URL: TCP, TLS, unix sockets, and an embedded in-process server.

``connect(url)`` understands:

* ``redis://[user:password@]host[:port][/db]``: plain TCP; a password alone
  is classic ``AUTH``, ``user:password`` an ACL user;
* ``rediss://...``: TLS; certificate options come from the query string
  (``?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required&ssl_certfile=...``)
  or from the keyword arguments of :func:`connect`;
* ``redis+sentinel://[user:password@]host1:port1[,host2:port2]/SERVICE[/db]``
  and ``rediss+sentinel://...`` (TLS; the same query options as ``rediss://``,
  plus ``sentinel_username``/``sentinel_password`` for Sentinels with auth of
  their own): a client of the primary the Sentinels name
  (:mod:`cluster.sentinel_url`);
* ``unix:///path/redis.sock?db=0``;
* ``fakeredis://NAME``: an embedded :class:`fakeredis.FakeServer`. Every
  client for the same NAME in one process talks to the same server, so an
  embedded coordinator and its workers (threads) see the same data. The
  registry of embedded servers is process-wide on purpose: it *is* the
  embedded "network"; tests isolate themselves by name or namespace.

Failover: every client finds the current primary by itself. A Sentinel
client asks the Sentinels again whenever its connection fails or the server
answers ``READONLY`` (a demoted primary); a ``redis://`` client drops a
connection that answers ``READONLY`` and resolves the host name again at its
next connect, so a managed endpoint whose DNS name moves to the new primary
is followed too (:mod:`cluster.primary_connections`). Each client retries a
command once after a connection error.

redis-py 8 gives every socket a 5 s read timeout by default. A blocking call
that waits longer (``BLPOP`` on a reply list, pub/sub reads) needs a client
whose timeout exceeds the block time: use :func:`blocking_client`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import fakeredis
import redis
import redis.sentinel

from cluster.errors import ConfigError
from cluster.primary_connections import (
    BlockingSentinelPool,
    PrimaryConnection,
    PrimarySSLConnection,
    SentinelPool,
    failover_retry,
)
from cluster.sentinel_url import SentinelTarget, is_sentinel_url, parse_sentinel_url
from cluster.settings import redact_url, unescaped_password_problem

__all__ = [
    "EMBEDDED_SCHEME",
    "blocking_client",
    "connect",
    "count_round_trips",
    "drop_embedded_server",
    "embedded_server",
    "sentinel_connection_options",
]

EMBEDDED_SCHEME = "fakeredis"
# Extra seconds a blocking client's socket waits beyond the server-side block,
# so the server's timeout reply arrives before the socket gives up.
_BLOCKING_MARGIN = 5.0
# Seconds a thread waits for a free connection of a sized pool.
_POOL_WAIT = 10.0

# The embedded servers of this process, by name: module-level because a
# ``fakeredis://NAME`` URL must reach the same server from every client built
# from it (coordinator and workers of one EmbeddedCluster), like a real URL
# reaches one Redis. Their owner is whoever named them: EmbeddedCluster drops
# its server when it stops (:func:`drop_embedded_server`).
_embedded_lock = threading.Lock()
_embedded: dict[str, fakeredis.FakeServer] = {}


def embedded_server(name: str) -> fakeredis.FakeServer:
    """Return the process-wide embedded server called ``name``, creating it once."""
    with _embedded_lock:
        server = _embedded.get(name)
        if server is None:
            server = fakeredis.FakeServer()
            _embedded[name] = server
        return server


def drop_embedded_server(name: str) -> bool:
    """Forget an embedded server (its data goes away with its last client).

    Returns:
        Whether a server of that name existed.
    """
    with _embedded_lock:
        return _embedded.pop(name, None) is not None


def connect(
    url: str,
    *,
    socket_timeout: float | None = None,
    decode_responses: bool = False,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_cert_reqs: str | None = None,
    pool_size: int | None = None,
    pool_wait: float = _POOL_WAIT,
    **extra: Any,
) -> redis.Redis:
    """Create a Redis client for ``url``.

    Args:
        url: See the module docstring for the accepted schemes.
        socket_timeout: Read timeout in seconds; ``None`` keeps redis-py's
            default (5 s). Blocking commands need :func:`blocking_client`.
        decode_responses: Return ``str`` instead of ``bytes``. The stores of
            this package need ``False`` (they hold msgpack bytes).
        ssl_ca_certs: CA bundle for ``rediss://`` (overrides the query string).
        ssl_certfile: Client certificate for mutual TLS.
        ssl_keyfile: Client key for mutual TLS.
        ssl_cert_reqs: ``"required"`` (default of redis-py), ``"optional"`` or ``"none"``.
        pool_size: Most connections the client opens; a thread that finds
            them all busy waits up to ``pool_wait`` seconds for one, then gets
            a ``redis.ConnectionError``. ``None``: redis-py's own pool, which
            fails at once past its default cap.
        pool_wait: See ``pool_size``.
        **extra: Passed to ``redis.Redis.from_url`` (e.g. ``max_connections``).

    Returns:
        A client; close it with ``client.close()`` when done.

    Raises:
        ConfigError: the URL is malformed or its scheme unknown (the message
            shows the URL with its password masked).
    """
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else type(url).__name__
        raise ConfigError(f"Redis URL must look like redis://host:6379/0, got {shown!r}")
    scheme = url.split("://", 1)[0]
    kwargs: dict[str, Any] = dict(extra)
    kwargs["decode_responses"] = decode_responses
    if socket_timeout is not None:
        kwargs["socket_timeout"] = socket_timeout
    if scheme == EMBEDDED_SCHEME:
        return _connect_embedded(url, kwargs)
    if scheme not in ("redis", "rediss", "unix") and not is_sentinel_url(url):
        raise ConfigError(
            f"Redis URL scheme must be redis://, rediss://, redis+sentinel://, "
            f"rediss+sentinel://, unix:// or fakeredis://, got {redact_url(url)!r}"
        )
    tls = {
        "ssl_ca_certs": ssl_ca_certs,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "ssl_cert_reqs": ssl_cert_reqs,
    }
    tls_given = {k: v for k, v in tls.items() if v is not None}
    if tls_given and scheme not in ("rediss", "rediss+sentinel"):
        raise ConfigError(
            f"TLS options ({', '.join(sorted(tls_given))}) need a rediss:// or "
            f"rediss+sentinel:// URL, got {redact_url(url)!r}"
        )
    kwargs.update(tls_given)
    problem = unescaped_password_problem(url)
    if problem:
        raise ConfigError(f"invalid Redis URL: {problem}")
    kwargs.setdefault("retry", failover_retry())
    if is_sentinel_url(url):
        target = parse_sentinel_url(url, shown=redact_url(url))
        return _connect_sentinel(target, kwargs, pool_size=pool_size, pool_wait=pool_wait)
    if scheme != "unix":
        kwargs.setdefault(
            "connection_class", PrimarySSLConnection if scheme == "rediss" else PrimaryConnection
        )
    try:
        if pool_size is not None:
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=pool_size, timeout=pool_wait, **kwargs
            )
            return redis.Redis.from_pool(pool)
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        # The parser's message may quote a piece of a malformed password.
        detail = (
            "malformed; percent-encode special characters of the password "
            "(/ as %2F, ? as %3F, # as %23, @ as %40)"
            if "@" in url
            else str(exc)
        )
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {detail}") from None


def blocking_client(
    url: str, *, block_seconds: float, decode_responses: bool = False, **kwargs: Any
) -> redis.Redis:
    """Create a client for blocking reads of up to ``block_seconds``.

    Its socket timeout is ``block_seconds`` plus a margin, so a ``BLPOP``
    with that timeout (or a pub/sub read) returns normally instead of raising
    ``TimeoutError`` at redis-py's default 5 s.

    Args:
        url: As for :func:`connect`.
        block_seconds: The longest server-side block the caller will ask for.
        decode_responses: As for :func:`connect`.
        **kwargs: Passed to :func:`connect`.
    """
    if block_seconds <= 0:
        raise ConfigError(f"block_seconds must be > 0, got {block_seconds!r}")
    return connect(
        url,
        socket_timeout=block_seconds + _BLOCKING_MARGIN,
        decode_responses=decode_responses,
        **kwargs,
    )


def count_round_trips(client: redis.Redis, count: Callable[[], object]) -> None:
    """Call ``count()`` on every request ``client`` sends to Redis from now on.

    A command, a pipeline and a script call are one round trip each. Call it
    before the client is used: connections already open are not counted.
    """
    pool = client.connection_pool
    base: type[Any] = pool.connection_class

    class Counted(base):  # type: ignore[misc]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            count()
            super().send_packed_command(command, check_health)

    Counted.__name__ = f"Counted{base.__name__}"
    pool.connection_class = Counted


def sentinel_connection_options(target: SentinelTarget, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a Sentinel's primary connections and of its Sentinel clients.

    Returns:
        ``{"primary": ..., "sentinel": ...}``: what ``master_for`` and what
        the Sentinel clients get (credentials, TLS, timeouts; the retry
        policy only for the primary, as redis-py advises).
    """
    primary = dict(kwargs)
    tls = {**target.tls_options, **{k: v for k, v in kwargs.items() if k.startswith("ssl_")}}
    primary.update(tls)
    primary["db"] = target.db
    if target.username is not None:
        primary["username"] = target.username
    if target.password is not None:
        primary["password"] = target.password
    sentinel: dict[str, Any] = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel.update(tls)
    if target.tls:
        primary["ssl"] = True
        sentinel["ssl"] = True
    if target.sentinel_username is not None:
        sentinel["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        sentinel["password"] = target.sentinel_password
    return {"primary": primary, "sentinel": sentinel}


def _connect_sentinel(
    target: SentinelTarget, kwargs: dict[str, Any], *, pool_size: int | None, pool_wait: float
) -> redis.Redis:
    options = sentinel_connection_options(target, kwargs)
    sentinel = redis.sentinel.Sentinel(target.sentinels, sentinel_kwargs=options["sentinel"])
    primary = options["primary"]
    if pool_size is not None:
        primary.update(max_connections=pool_size, timeout=pool_wait)
        client: redis.Redis = sentinel.master_for(
            target.service, connection_pool_class=BlockingSentinelPool, **primary
        )
        return client
    made: redis.Redis = sentinel.master_for(
        target.service, connection_pool_class=SentinelPool, **primary
    )
    return made


def _connect_embedded(url: str, kwargs: dict[str, Any]) -> redis.Redis:
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/") or "default"
    # Options that only make sense for a network connection are ignored.
    allowed = {"decode_responses", "socket_timeout", "encoding", "encoding_errors"}
    options = {k: v for k, v in kwargs.items() if k in allowed}
    client: redis.Redis = fakeredis.FakeRedis(server=embedded_server(name), **options)
    return client
