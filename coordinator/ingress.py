"""The coordinator's Python API: submit a message for a session, get its reply.

``Coordinator.submit`` validates the message, routes the session (sticky owner
or consistent-hash choice), enqueues the turn on the owner's rq queue with the
message id as job id, and waits for the reply the worker pushes. A message is
refused (never accepted and then lost) when no worker can take it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from cluster.connection import blocking_client, connect
from cluster.errors import InvalidMessage, PayloadTooLarge, TurnFailed, TurnTimeout
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.ownership import RedisOwnershipStore
from cluster.settings import ClusterSettings
from cluster.transport import ReplyChannel, TurnJob, TurnQueue
from coordinator.routing import Router

ATTR_KEYS = frozenset({"platform", "user_id", "chat_id", "reasoning"})


@dataclass(frozen=True)
class Reply:
    """A turn's answer.

    Attributes:
        text: the assistant's final text.
        message_id: the id the message was submitted under.
        worker_id: the worker that ran the turn.
        cache_hit: whether the worker reused a cached agent.
        raw: the whole reply record (usage, turn number, ...).
    """

    text: str
    message_id: str
    worker_id: str
    cache_hit: bool
    raw: Mapping[str, Any]


class TurnHandle:
    """A submitted turn; :meth:`result` waits for its reply."""

    def __init__(
        self, replies: ReplyChannel, session_key: str, message_id: str, worker_id: str
    ) -> None:
        self._replies = replies
        self.session_key = session_key
        self.message_id = message_id
        self.worker_id = worker_id
        self._reply: Reply | None = None

    def result(self, timeout: float = 120.0) -> Reply:
        """Wait for the reply.

        Raises:
            TurnTimeout: no reply within ``timeout`` (the turn may still finish).
            TurnFailed: the worker ran the turn and it failed.
        """
        if self._reply is not None:
            return self._reply
        raw = self._replies.wait(self.session_key, self.message_id, timeout)
        if raw is None:
            raise TurnTimeout(
                f"no reply for message {self.message_id!r} of session {self.session_key!r} within "
                f"{timeout:g}s (worker {self.worker_id}); it may still be answered: wait again or "
                "resubmit with the same message id (it is answered once)"
            )
        if not raw.get("ok"):
            raise TurnFailed(
                f"message {self.message_id!r} of session {self.session_key!r} failed on "
                f"worker {raw.get('worker_id')}: {raw.get('error')}"
            )
        self._reply = Reply(
            text=str(raw["text"]),
            message_id=self.message_id,
            worker_id=str(raw["worker_id"]),
            cache_hit=bool(raw.get("cache_hit")),
            raw=raw,
        )
        return self._reply


class Coordinator:
    """Routes messages to workers over Redis and returns their replies."""

    def __init__(
        self,
        *,
        settings: ClusterSettings,
        client: redis.Redis | None = None,
        blocking: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.keyspace = Keyspace(settings.namespace)
        self.client = client if client is not None else connect(settings.redis_url)
        self._blocking = (
            blocking
            if blocking is not None
            else blocking_client(settings.redis_url, block_seconds=settings.turn_timeout)
        )
        self.membership = RedisMembership(
            self.client, self.keyspace, heartbeat_ttl=settings.heartbeat_ttl
        )
        self.router = Router(
            membership=self.membership,
            ownership=RedisOwnershipStore(self.client, self.keyspace),
            refresh_interval=min(0.5, settings.heartbeat_interval),
        )
        self.queue = TurnQueue(
            self.client,
            self.keyspace,
            job_timeout=settings.turn_timeout,
            result_ttl=settings.reply_ttl,
        )
        self.replies = ReplyChannel(self._blocking, self.keyspace, reply_ttl=settings.reply_ttl)

    def _validate(
        self, session_key: Any, text: Any, message_id: Any, attrs: Mapping[str, Any]
    ) -> None:
        if not isinstance(session_key, str) or not session_key.strip():
            raise InvalidMessage(f"session_key must be a non-empty string, got {session_key!r}")
        if not isinstance(text, str) or not text.strip():
            raise InvalidMessage(f"text must be a non-empty string, got {text!r}")
        if not isinstance(message_id, str) or not message_id:
            raise InvalidMessage(f"message_id must be a non-empty string, got {message_id!r}")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.settings.max_message_bytes:
            raise PayloadTooLarge(
                f"message of {size} bytes exceeds max_message_bytes={self.settings.max_message_bytes}; "
                "split it or raise AGENT_CLUSTER_MAX_MESSAGE_BYTES"
            )
        unknown = set(attrs) - ATTR_KEYS
        if unknown:
            raise InvalidMessage(
                f"unknown message attributes {sorted(unknown)}; allowed: {sorted(ATTR_KEYS)}"
            )

    def submit_async(
        self, session_key: str, text: str, *, message_id: str | None = None, **attrs: Any
    ) -> TurnHandle:
        """Validate, route and enqueue; return a handle to wait on.

        Raises:
            InvalidMessage, PayloadTooLarge: the message is malformed or too big.
            NoLiveWorkers: no worker can take it (nothing was accepted).
        """
        message_id = message_id or uuid.uuid4().hex
        self._validate(session_key, text, message_id, attrs)
        owner = self.router.route(session_key)
        job = TurnJob(
            message_id=message_id,
            session_key=session_key,
            text=text,
            submitted_at=time.time(),
            attrs=dict(attrs),
        )
        self.queue.enqueue(owner.worker_id, job)
        return TurnHandle(self.replies, session_key, message_id, owner.worker_id)

    def submit(
        self,
        session_key: str,
        text: str,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
        **attrs: Any,
    ) -> Reply:
        """Submit a message and wait for its reply (see :meth:`submit_async`)."""
        handle = self.submit_async(session_key, text, message_id=message_id, **attrs)
        return handle.result(self.settings.turn_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the Redis connections."""
        self.client.close()
        self._blocking.close()
