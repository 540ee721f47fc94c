"""Workspace snapshots in Redis: one per session, fenced by its lease and its ownership.

A session's workspace lives on the disk of the worker that runs it. So that
it can follow the session to another host, the owner stores a compressed
snapshot (:mod:`worker.workspace_archive` builds it) in the session's
hash ``{ns}:s:{S}:workspace`` (same slot as its lease and owner record), and
a new owner restores it before the session's next turn. The snapshot is named
by the SHA-256 of its content: :meth:`RedisWorkspaceStore.stored_digest` lets
a worker skip uploading a workspace that did not change, and
:meth:`RedisWorkspaceStore.save` (``workspace_save.lua``) refuses a caller
that no longer holds the session's lease or is not its owner, so a stale
owner can never overwrite a newer snapshot. The session's reset
(``session_reset.lua``) deletes the snapshot; a soft release keeps it.

This module moves bytes only; it never reads or writes a workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from cluster.keys import Keyspace
from cluster.leases import Lease, lease_lost
from cluster.redis_text import text
from cluster.scripts import ScriptSet

__all__ = ["RedisWorkspaceStore", "StoredWorkspace"]


@dataclass(frozen=True)
class StoredWorkspace:
    """A session's stored snapshot.

    Attributes:
        digest: hex SHA-256 of the uncompressed snapshot.
        data: the compressed snapshot.
        worker_id: who stored it.
        token: the lease token it was stored under.
        taken_at: when it was stored (Redis clock, seconds since the epoch).
    """

    digest: str
    data: bytes
    worker_id: str
    token: int
    taken_at: float


class RedisWorkspaceStore:
    """The ``{ns}:s:{S}:workspace`` hashes."""

    def __init__(self, client: redis.Redis, keyspace: Keyspace) -> None:
        """Create the store on a bytes client (``decode_responses=False``)."""
        self._client = client
        self._keys = keyspace
        self._scripts = ScriptSet(client)

    def stored_digest(self, session_key: str) -> str | None:
        """The digest of the session's stored snapshot, or ``None`` when it has none."""
        raw = self._client.hget(self._keys.session(session_key).workspace, "digest")
        return None if raw is None else (text(raw) or None)

    def load(self, session_key: str) -> StoredWorkspace | None:
        """The session's stored snapshot (one atomic read), or ``None``."""
        digest, data, worker, token, at = self._client.hmget(
            self._keys.session(session_key).workspace, ["digest", "data", "worker", "token", "at"]
        )
        if digest is None or not isinstance(data, bytes):
            return None
        return StoredWorkspace(
            text(digest), data, text(worker or b""), int(token or 0), int(at or 0) / 1000.0
        )

    def save(
        self,
        lease: Lease,
        *,
        digest: str,
        data: bytes,
        members: int,
        raw_bytes: int,
        omitted: int,
    ) -> bool:
        """Store a snapshot of ``lease``'s session unless that digest is stored already.

        The caller compares with :meth:`stored_digest` first, so an unchanged
        workspace is not even sent; the script checks again (atomically).

        Args:
            lease: the session's lease held by the caller (a turn's, or one a
                draining worker took for the hand-over).
            digest: hex SHA-256 of the uncompressed snapshot.
            data: the compressed snapshot.
            members: files and directories in it.
            raw_bytes: its uncompressed size.
            omitted: entries left out of it.

        Returns:
            Whether it was stored (``False``: that digest was stored already).

        Raises:
            LeaseLost: the lease was taken over; nothing was written. (The
                session may have a new owner meanwhile: a drain hands a
                session's queued turns on while its turn runs here; that
                turn's snapshot is what the new owner restores.)
        """
        keys = self._keys.session(lease.session_key)
        code, value = self._scripts(
            "workspace_save",
            [keys.lease, keys.owner, keys.workspace],
            [lease.fence, lease.worker_id, digest, data, members, raw_bytes, omitted],
        )
        code = int(code)
        if code == 0:
            raise lease_lost(lease, value)
        return code == 1
