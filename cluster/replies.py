"""Per-message reply lists: the worker (or its commit script) pushes a reply, the caller pops it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import redis

from cluster.blocking import blocking_read
from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import ConfigError, InvalidMessage
from cluster.keys import Keyspace
from cluster.serialization import pack, unpack

__all__ = ["ReplyChannel"]


class ReplyChannel:
    """Per-message reply lists: the worker pushes one reply, the caller pops it.

    :meth:`wait` blocks in slices shorter than the client's socket timeout, so
    it works on any client; a client from
    :func:`cluster.connection.blocking_client` just needs fewer slices. On
    fakeredis it polls every few milliseconds instead of spinning.
    """

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        reply_ttl: float,
        durability: Durability = NO_DURABILITY,
    ) -> None:
        """Bind to a client (``decode_responses=False``) and a keyspace.

        Args:
            client: Redis client.
            keyspace: Names the reply lists.
            reply_ttl: Seconds an unread reply stays available.
            durability: With ``replica``, a popped reply counts only once a
                replica confirms the pop, which it can only do after it got
                the commit that pushed the reply (one replication stream).
        """
        if isinstance(reply_ttl, bool) or not isinstance(reply_ttl, int | float) or reply_ttl <= 0:
            raise ConfigError(f"ReplyChannel reply_ttl must be seconds > 0, got {reply_ttl!r}")
        self._client = client
        self._keyspace = keyspace
        self._ttl_ms = max(1, math.ceil(reply_ttl * 1000))
        self._durability = durability

    def push(self, session_key: str, message_id: str, reply: Mapping[str, Any]) -> None:
        """Deliver a message's reply (RPUSH + PEXPIRE + a wake-up PUBLISH in one MULTI/EXEC).

        The ``PUBLISH`` on the list's channel (:meth:`Keyspace.wake_channel`)
        wakes the gateway whose caller waits for this reply.

        Raises:
            InvalidMessage: ``reply`` is not plain msgpack-safe data.
        """
        try:
            data = pack(dict(reply))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not plain data: {exc}"
            ) from None
        key = self._keyspace.reply_list(session_key, message_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, data)
            pipe.pexpire(key, self._ttl_ms)
            pipe.publish(self._keyspace.wake_channel(key), b"")
            pipe.execute()

    def wait(self, session_key: str, message_id: str, timeout: float) -> dict[str, Any] | None:
        """Pop a message's reply, waiting up to ``timeout`` seconds.

        Returns:
            The reply dict, or ``None`` if none arrived in time.

        Raises:
            InvalidMessage: the stored reply is not a msgpack map.
            NotReplicated: with durability ``replica``, no replica confirmed
                the reply's commit (a failover may lose it): resubmit the
                message with the same id.
        """
        key = self._keyspace.reply_list(session_key, message_id)
        raw: Any
        if timeout <= 0:
            raw = self._pop(key, 0)
        else:
            raw = blocking_read(self._client, lambda seconds: self._pop(key, seconds), timeout)
        if raw is None:
            return None
        try:
            value = unpack(raw)
        except ValueError as exc:
            raise InvalidMessage(
                f"reply for message {message_id!r} is not msgpack: {exc}"
            ) from None
        if not isinstance(value, dict):
            raise InvalidMessage(
                f"reply for message {message_id!r} must be a map, got {type(value).__name__}"
            )
        return value

    def _pop(self, key: str, seconds: float) -> bytes | None:
        """``LPOP`` (``seconds`` 0) or ``BLPOP``, then ``WAIT`` and ``ROLE`` for ``replica``."""
        waits = self._durability.mode == "replica"
        if waits:
            self._durability.learn_once(self._client)
        pipe = self._client.pipeline(transaction=False)
        if seconds > 0:
            pipe.blpop([key], seconds)
        else:
            pipe.lpop(key)
        if waits:
            self._durability.queue_wait(pipe)
        results = pipe.execute()
        got = results[0]
        if got is None:
            return None
        if waits:
            self._durability.confirm("the reply's commit", *results[1:])
        return bytes(got[1] if seconds > 0 else got)
