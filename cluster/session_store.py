"""Conversation state in Redis: history, frozen prompt, metadata, processed messages.

Everything a worker needs to rebuild a session's agent on any host:

* **history**: the neutral message dicts of ``docs/architecture.md``, one
  msgpack element per message in a list, appended by committed turns only;
* **frozen prompt**: the system prompt and tool schemas the session's agent
  was built with, stored as one msgpack blob and read back byte-identically,
  so a rebuilt agent sends the same prefix and the provider's prompt cache
  stays warm;
* **meta**: session key, created / last active (Redis clock, seconds), the
  number of committed turns;
* **processed message ids** with their replies: a message delivered twice
  (redelivery after a crash) is answered from the stored reply, never run twice.

Writes are fenced by the running-turn lease (:mod:`cluster.leases`): a stale
token raises :class:`~cluster.errors.LeaseLost` and writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cluster.durability import NO_DURABILITY, Durability
from cluster.errors import InvalidMessage
from cluster.jobs import JobFinish
from cluster.keys import Keyspace
from cluster.leases import Lease, lease_lost
from cluster.redis_text import text
from cluster.scripts import ScriptSet
from cluster.serialization import pack, unpack

__all__ = [
    "Committed",
    "StoredPrompt",
    "RedisSessionStore",
    "SessionMeta",
    "SessionSnapshot",
    "validate_message",
]

_ROLES = frozenset({"user", "assistant", "tool"})
DEFAULT_PROCESSED_RETENTION = 7 * 24 * 3600.0


@dataclass(frozen=True)
class StoredPrompt:
    """A session's frozen prompt as stored: exact msgpack bytes plus its signature.

    The value type is the agent's (``agent.prompt.FrozenPrompt``: system prompt
    and tool schemas); this is its stored form (the cluster package does not
    import the agent), which the worker converts back.

    Attributes:
        system_prompt: The exact system prompt text.
        tool_schemas: Neutral tool schemas, sorted by name.
        blob: The stored msgpack bytes (what "byte-identical" is about).
        signature: The agent config signature the prompt was frozen under; a worker
            reuses the stored prompt only for an agent of the same signature (a
            config bust or registry bump must produce a new prompt).
    """

    system_prompt: str
    tool_schemas: list[dict[str, Any]]
    blob: bytes
    signature: str = ""

    @classmethod
    def build(
        cls, system_prompt: str, tool_schemas: Sequence[Mapping[str, Any]], *, signature: str = ""
    ) -> StoredPrompt:
        """Freeze a prompt and schemas (schemas keep their key order, list order as given)."""
        if not isinstance(system_prompt, str):
            raise InvalidMessage(
                f"system prompt must be a string, got {type(system_prompt).__name__}"
            )
        schemas = [dict(s) for s in tool_schemas]
        blob = pack(
            {"system_prompt": system_prompt, "tool_schemas": schemas, "signature": signature}
        )
        return cls(
            system_prompt=system_prompt, tool_schemas=schemas, blob=blob, signature=signature
        )

    @classmethod
    def from_blob(cls, blob: bytes) -> StoredPrompt:
        """Decode a stored blob (kept as is in :attr:`blob`)."""
        data = unpack(blob)
        return cls(
            system_prompt=data["system_prompt"],
            tool_schemas=data["tool_schemas"],
            blob=bytes(blob),
            signature=str(data.get("signature", "")),
        )


@dataclass(frozen=True)
class SessionMeta:
    """Bookkeeping of a session.

    Attributes:
        session_key: The session.
        created: First write, seconds since the epoch (Redis clock).
        last_active: Last committed turn (Redis clock).
        turns: Number of committed turns.
    """

    session_key: str
    created: float
    last_active: float
    turns: int


@dataclass(frozen=True)
class Committed:
    """The outcome of :meth:`RedisSessionStore.commit`.

    Attributes:
        turns: The session's committed-turn count after the commit.
        rolled_back: A later message rolled this turn back: its messages were
            discarded and only the message id with the rollback reply recorded.
        duplicate: The message id was committed before; nothing was written.
    """

    turns: int
    rolled_back: bool = False
    duplicate: bool = False


@dataclass(frozen=True)
class SessionSnapshot:
    """Everything stored for a session, read in one round trip.

    Attributes:
        history: Committed messages, oldest first (empty for a new session).
        frozen_prompt: The frozen prompt, or ``None`` before the first turn.
        meta: The metadata, or ``None`` for a session never written.
    """

    history: list[dict[str, Any]]
    frozen_prompt: StoredPrompt | None
    meta: SessionMeta | None


def validate_message(message: Any) -> dict[str, Any]:
    """Check one neutral message dict and return it as a plain dict.

    Raises:
        InvalidMessage: not a mapping, no known ``role``, or content of the wrong type.
    """
    if not isinstance(message, Mapping):
        raise InvalidMessage(f"a history message must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in _ROLES:
        raise InvalidMessage(f"message role must be one of {sorted(_ROLES)}, got {role!r}")
    content = message.get("content")
    if not (isinstance(content, str) or (content is None and role == "assistant")):
        raise InvalidMessage(
            f"{role} message content must be a string"
            + (" or None" if role == "assistant" else "")
            + f", got {type(content).__name__}"
        )
    return dict(message)


def _meta(raw: Mapping[bytes, bytes]) -> SessionMeta | None:
    if not raw:
        return None
    fields = {text(k): text(v) for k, v in raw.items()}
    return SessionMeta(
        session_key=fields.get("session_key", ""),
        created=float(fields.get("created", "0")) / 1000.0,
        last_active=float(fields.get("last_active", "0")) / 1000.0,
        turns=int(fields.get("turns", "0")),
    )


class RedisSessionStore:
    """Session state in Redis (keys ``{ns}:s:{S}:*``, one slot per session)."""

    def __init__(
        self,
        client: redis.Redis,
        keyspace: Keyspace,
        *,
        processed_retention: float = DEFAULT_PROCESSED_RETENTION,
        durability: Durability = NO_DURABILITY,
    ) -> None:
        """Create the store.

        Args:
            client: A bytes client (``decode_responses=False``).
            keyspace: The cluster's keyspace.
            processed_retention: Seconds a processed message id and its reply
                are remembered (``ClusterSettings.processed_retention``).
            durability: With ``replica``, a commit counts only once a replica
                has it (:class:`~cluster.errors.NotReplicated` otherwise).
        """
        if not processed_retention > 0:
            raise InvalidMessage(
                f"processed_retention must be > 0 seconds, got {processed_retention!r}"
            )
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client, durability=durability)
        self._retention_ms = int(processed_retention * 1000)

    def load(self, session_key: str) -> SessionSnapshot:
        """Read history, frozen prompt and meta in one atomic round trip."""
        keys = self._keys.session(session_key)
        pipe = self._client.pipeline(transaction=True)
        pipe.lrange(keys.history, 0, -1)
        pipe.get(keys.prompt)
        pipe.hgetall(keys.meta)
        history_raw, prompt_raw, meta_raw = pipe.execute()
        return SessionSnapshot(
            history=[unpack(item) for item in history_raw],
            frozen_prompt=StoredPrompt.from_blob(prompt_raw) if prompt_raw is not None else None,
            meta=_meta(meta_raw),
        )

    def save_frozen_prompt(self, lease: Lease, prompt: StoredPrompt) -> None:
        """Store the session's frozen prompt (fenced).

        Raises:
            LeaseLost: ``lease`` is no longer the session's lease; nothing was written.
        """
        keys = self._keys.session(lease.session_key)
        ok, current = self._scripts(
            "session_prompt",
            [keys.lease, keys.prompt, keys.meta],
            [lease.fence, prompt.blob, lease.session_key],
        )
        if not ok:
            raise lease_lost(lease, current)

    def commit(
        self,
        lease: Lease,
        *,
        message_id: str,
        new_messages: Sequence[Mapping[str, Any]],
        reply: Any,
        job_id: str = "",
        reply_ttl: float = 0.0,
        rollback_reply: Any = None,
        finish: JobFinish | None = None,
    ) -> Committed:
        """Append a turn's messages and record ``message_id -> reply``, atomically and fenced.

        With ``job_id`` the turn's job leaves the session's pending set, and
        with ``reply_ttl`` the reply is pushed to the message's reply list, in
        the same script: a crash right after the commit cannot lose the reply.
        When a later message asked to roll this turn back (its lease is marked),
        the messages are discarded and ``rollback_reply`` (default: ``reply``)
        is recorded and delivered instead.

        Args:
            lease: The turn's lease.
            message_id: Id of the user message this turn answers.
            new_messages: The turn's messages (user, assistant, tool), in order.
            reply: What the caller gets back (msgpack-safe, not ``None``).
            job_id: The turn's rq job id (``""``: no pending entry to clear).
            reply_ttl: Seconds the delivered reply waits for its caller (0: not delivered).
            rollback_reply: The reply for a rolled-back turn.
            finish: The turn's rq job (:meth:`TurnQueue.finish_for`): unless
                the lease was lost, the same script releases the lease and
                completes the job, so the whole end of a turn is one round trip.

        Returns:
            The session's committed-turn count and whether the turn was rolled
            back or a duplicate (nothing written; read :meth:`reply_for`).

        Raises:
            LeaseLost: the lease was taken over; nothing was written.
            InvalidMessage: a message is malformed, the id empty or the reply ``None``.
        """
        if not isinstance(message_id, str) or not message_id:
            raise InvalidMessage(f"message id must be a non-empty string, got {message_id!r}")
        if reply is None:
            raise InvalidMessage("a turn's reply must not be None (None means 'not processed')")
        blobs = [pack(validate_message(m)) for m in new_messages]
        keys = self._keys.session(lease.session_key)
        status, turns, current = self._scripts(
            "session_commit",
            [
                keys.lease,
                keys.history,
                keys.meta,
                keys.processed,
                keys.replies,
                keys.pending,
                self._keys.reply_list(lease.session_key, message_id),
                *(finish.keys if finish is not None else ()),
            ],
            [
                lease.fence,
                message_id,
                pack(reply),
                self._retention_ms,
                lease.session_key,
                job_id,
                max(0, math.ceil(reply_ttl * 1000)),
                pack(reply if rollback_reply is None else rollback_reply),
                len(finish.args) if finish is not None else 0,
                *(finish.args if finish is not None else ()),
                *blobs,
            ],
        )
        if status == 0:
            raise lease_lost(lease, current)
        return Committed(turns=int(turns), rolled_back=status == 3, duplicate=status == 2)

    def reset(
        self, lease: Lease, *, message_id: str, reply: Any, job_id: str, reply_ttl: float
    ) -> None:
        """Reset the session under its lease and deliver the reset message's reply (one script).

        Deletes history, frozen prompt, meta, processed ids, stored replies,
        tool state and the workspace snapshot; records ``message_id`` as answered with ``reply``.

        Raises:
            LeaseLost: the lease was taken over; nothing was written.
        """
        keys = self._keys.session(lease.session_key)
        ok, current = self._scripts(
            "session_reset",
            [
                keys.lease,
                keys.history,
                keys.prompt,
                keys.meta,
                keys.processed,
                keys.replies,
                keys.tools,
                keys.pending,
                self._keys.reply_list(lease.session_key, message_id),
                keys.workspace,
            ],
            [lease.fence, message_id, pack(reply), job_id, max(1, math.ceil(reply_ttl * 1000))],
        )
        if not ok:
            raise lease_lost(lease, current)

    def reply_for(self, session_key: str, message_id: str) -> Any | None:
        """The stored reply of an already processed message, or ``None``."""
        raw = self._client.hget(self._keys.session(session_key).replies, message_id)
        return None if raw is None else unpack(raw)
