"""Persisted per-task tool state in Redis, optionally fenced by a turn's lease.

:class:`RedisToolStateStore` satisfies the agent's ``ToolStateStore``
protocol (``agent/tools/state.py``) structurally, without importing ``agent``.
Values are msgpack-encoded (msgpack/JSON-safe values only; tuples come back
as lists). The task id is the session key, so a task's hash
``{ns}:s:{S}:tools`` shares the session's slot with its lease.

A store bound to a lease (``RedisToolStateStore(client, ks, lease=lease)``,
or :meth:`RedisToolStateStore.fenced`) checks the lease's token inside the
write script: after a takeover, ``save`` and ``delete_task`` raise
:class:`~cluster.errors.LeaseLost` and write nothing. Reads are never fenced.
Soft release of an agent never calls ``delete_task``; only a hard session end does.
"""

from __future__ import annotations

from typing import Any

import redis

from cluster.errors import InvalidMessage
from cluster.keys import Keyspace
from cluster.leases import Lease, lease_lost
from cluster.scripts import ScriptSet
from cluster.serialization import pack, unpack

__all__ = ["RedisToolStateStore"]


class RedisToolStateStore:
    """Tool state per task id: ``load``/``save``/``delete_task``."""

    def __init__(
        self, client: redis.Redis, keyspace: Keyspace, *, lease: Lease | None = None
    ) -> None:
        """Create the store.

        Args:
            client: A bytes client (``decode_responses=False``).
            keyspace: The cluster's keyspace.
            lease: When given, writes are fenced by it; they may only touch
                the lease's own session (task id == session key).
        """
        self._client = client
        self._keys = keyspace
        self._lease = lease
        self._scripts = ScriptSet(client)

    @property
    def lease(self) -> Lease | None:
        """The lease writes are fenced by, if any."""
        return self._lease

    def fenced(self, lease: Lease) -> RedisToolStateStore:
        """A store on the same client whose writes are fenced by ``lease``."""
        return RedisToolStateStore(self._client, self._keys, lease=lease)

    def load(self, task_id: str, key: str) -> Any | None:
        """The value saved under ``key`` for ``task_id``, or ``None``."""
        raw = self._client.hget(self._keys.tool_state(task_id), self._field(key))
        return None if raw is None else unpack(raw)

    def save(self, task_id: str, key: str, value: Any) -> None:
        """Save ``value`` (msgpack-safe) under ``key`` for ``task_id``.

        Raises:
            LeaseLost: the store is fenced and its lease was taken over.
            TypeError: ``value`` is not msgpack-safe.
        """
        blob = pack(value)
        field = self._field(key)
        if self._lease is None:
            self._client.hset(self._keys.tool_state(task_id), field, blob)
            return
        lease = self._check_task(task_id)
        ok, current = self._scripts(
            "fenced_hset",
            [self._keys.session(lease.session_key).lease, self._keys.tool_state(task_id)],
            [lease.fence, field, blob],
        )
        if not ok:
            raise lease_lost(lease, current)

    def delete_task(self, task_id: str) -> None:
        """Delete all state of ``task_id`` (hard session end only).

        Raises:
            LeaseLost: the store is fenced and its lease was taken over.
        """
        if self._lease is None:
            self._client.delete(self._keys.tool_state(task_id))
            return
        lease = self._check_task(task_id)
        ok, current = self._scripts(
            "fenced_delete",
            [self._keys.session(lease.session_key).lease, self._keys.tool_state(task_id)],
            [lease.fence],
        )
        if not ok:
            raise lease_lost(lease, current)

    def _check_task(self, task_id: str) -> Lease:
        lease = self._lease
        assert lease is not None
        if task_id != lease.session_key:
            raise InvalidMessage(
                f"a store fenced by the lease of session {lease.session_key!r} cannot write "
                f"tool state of task {task_id!r}; use a store fenced by that task's lease"
            )
        return lease

    @staticmethod
    def _field(key: str) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidMessage(f"tool state key must be a non-empty string, got {key!r}")
        return key
