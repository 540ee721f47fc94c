"""Session ownership: which worker a session is sticky to, and since which epoch.

The coordinator routes each message with :meth:`RedisOwnershipStore.lookup_or_assign`:
one script call that keeps the current owner while it is eligible (the caller
passes the live, non-draining worker ids, so the script only touches the
session's slot and never reads membership) and otherwise moves the session
to the ring's proposal, bumping the session's epoch. The epoch only grows, so
"owner X at epoch 7" unambiguously names one tenure.

Each worker also has an index set of the sessions assigned to it, used by
drain and dead-worker recovery. It is written by the same script, which
makes it cross-slot on Redis Cluster (see ``ownership_assign.lua``), and it may
hold stale entries (a session that moved away is not removed from its old
owner's set inside the script, because the old owner's key is unknown before
the script runs): :meth:`RedisOwnershipStore.sessions_owned_by` checks every
entry against the owner record and drops the stale ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from cluster.errors import InvalidMessage, NoLiveWorkers
from cluster.keys import Keyspace
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = ["Ownership", "RedisOwnershipStore"]


@dataclass(frozen=True)
class Ownership:
    """The owner of a session.

    Attributes:
        worker_id: The owning worker.
        epoch: Tenure number of the session's ownership; grows on every move.
        moved: Whether this call assigned a new owner (the session was new or
            its previous owner was not eligible).
    """

    worker_id: str
    epoch: int
    moved: bool


class RedisOwnershipStore:
    """Ownership records in Redis (``{ns}:s:{S}:owner``, ``{ns}:owned:W``)."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Create the store on a bytes client (``decode_responses=False``)."""
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)

    def lookup_or_assign(
        self, session_key: str, *, eligible: Sequence[str], proposed: str
    ) -> Ownership:
        """Return the session's owner, assigning ``proposed`` if needed, atomically.

        Args:
            session_key: The session.
            eligible: Ids of the live, non-draining workers.
            proposed: The consistent-hash choice among ``eligible``.

        Raises:
            NoLiveWorkers: ``eligible`` is empty.
            InvalidMessage: ``proposed`` is not one of ``eligible``.
        """
        if not eligible:
            raise NoLiveWorkers(
                f"no live, non-draining worker can own session {session_key!r}; start a worker"
            )
        if proposed not in eligible:
            raise InvalidMessage(
                f"proposed owner {proposed!r} is not among the eligible workers {list(eligible)!r}"
            )
        worker, epoch, moved = self._scripts(
            "ownership_assign",
            [self._keys.session(session_key).owner, self._keys.owned_sessions(proposed)],
            [session_key, proposed, *eligible],
        )
        return Ownership(worker_id=text(worker), epoch=int(epoch), moved=bool(moved))

    def owner_of(self, session_key: str) -> Ownership | None:
        """The session's current owner, or ``None`` when it has none."""
        worker, epoch = self._client.hmget(
            self._keys.session(session_key).owner, ["worker", "epoch"]
        )
        if worker is None:
            return None
        return Ownership(worker_id=text(worker), epoch=int(epoch or 0), moved=False)

    def sessions_owned_by(self, worker_id: str) -> list[str]:
        """Session keys ``worker_id`` owns right now, sorted.

        Reads the worker's index set, checks each entry against its owner record
        (one pipelined round trip) and removes entries that moved away.
        """
        index_key = self._keys.owned_sessions(worker_id)
        members = sorted(text(m) for m in self._client.smembers(index_key))
        if not members:
            return []
        pipe = self._client.pipeline(transaction=False)
        for session_key in members:
            pipe.hget(self._keys.session(session_key).owner, "worker")
        owners = pipe.execute()
        owned = [
            s
            for s, o in zip(members, owners, strict=True)
            if o is not None and text(o) == worker_id
        ]
        stale = [
            s for s, o in zip(members, owners, strict=True) if o is None or text(o) != worker_id
        ]
        if stale:
            # Racy by design: a session moving back to this worker between the
            # read and the SREM drops out of the index. The index only speeds up
            # drain/recovery; routing never trusts it (the owner record does).
            self._client.srem(index_key, *stale)
        return owned
