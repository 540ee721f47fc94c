"""A session's workspace follows it between hosts: snapshot after changes, restore on arrival.

With ``workspace_mode: snapshot`` (each worker has its own disk), a worker:

- at the end of every turn that changed the session's workspace
  (:meth:`WorkspaceHandoff.after_turn`, under the turn's lease, before the
  history commit) stores a snapshot in Redis (:mod:`cluster.workspace_store`),
  at most ``workspace_snapshot_max_bytes`` of file content, the rest listed;
- when draining (:meth:`WorkspaceHandoff.snapshot_owned`), takes each idle
  owned session's lease for a moment and snapshots what changed since its
  last turn (a background process may have written files);
- before a turn (:meth:`WorkspaceHandoff.before_turn`) restores the stored
  snapshot when it is not the one this host last wrote or restored, and
  returns a notice for the agent naming what could not follow (files over
  the cap, links, background processes). A rebalance moves only idle
  sessions, so their last end-of-turn snapshot is what the new owner finds;
  after a crash, too.

Which snapshot this host last synced, and the metadata fingerprint of the
workspace at that moment, are kept in the session's control directory
(outside the sandbox), so a turn that changed nothing reads no file contents
and an unchanged workspace is never uploaded again. A local copy is only
snapshotted when it descends from the stored snapshot (same digest), so a
host holding an old copy of a session that lived elsewhere since can never
overwrite the newer snapshot; the Lua script fences every write by the lease
token and the owner record besides.

With ``workspace_mode: shared`` every worker sees the same workspace
directory, and all of this is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from agent.tools import ToolEnvironment
from agent.tools.background import load_table, probe
from agent.tools.environment import remove_tree, secure_dir
from agent.tools.state import ToolStateStore, safe_task_id
from cluster.errors import LeaseLost, ToolError
from cluster.leases import Lease, RedisLeaseStore
from cluster.ownership import RedisOwnershipStore
from cluster.workspace_store import RedisWorkspaceStore
from worker.workspace_archive import (
    Member,
    Omitted,
    decode_archive,
    encode_archive,
    fingerprint,
    plan_snapshot,
)
from worker.workspace_files import read_members, scan_workspace, write_members
from worker.workspace_notice import LostProcess, restore_notice

__all__ = ["SyncMark", "WorkspaceHandoff"]

log = logging.getLogger("worker.workspaces")

_MARK_FILE = "workspace-sync.json"


@dataclass(frozen=True)
class SyncMark:
    """The snapshot this host last stored or restored for a session, and the workspace then.

    Attributes:
        digest: the snapshot's digest.
        fingerprint: :func:`~worker.workspace_archive.fingerprint` of the
            workspace right after (a different one means it changed since).
    """

    digest: str
    fingerprint: str


class WorkspaceHandoff:
    """Snapshots and restores the workspaces of the sessions this worker runs."""

    def __init__(
        self,
        *,
        tool_env: ToolEnvironment,
        store: RedisWorkspaceStore,
        tool_state: ToolStateStore,
        leases: RedisLeaseStore,
        ownership: RedisOwnershipStore,
        worker_id: str,
        mode: str,
        max_bytes: int,
        lease_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Bind the stores; nothing is read or written before a method is called.

        Args:
            tool_env: where the workspaces and control directories are.
            store: the snapshots in Redis.
            tool_state: the sessions' tool state (read only: the background-process tables).
            leases: to take an idle session's lease for a drain snapshot.
            ownership: which sessions this worker owns (drain).
            worker_id: this worker.
            mode: ``snapshot`` or ``shared`` (``ClusterSettings.workspace_mode``).
            max_bytes: file bytes one snapshot carries at most.
            lease_ttl: lease time for a drain snapshot.
            clock: wall clock (seconds), compared with the Redis time a snapshot was stored.
        """
        self._env = tool_env
        self._store = store
        self._tool_state = tool_state
        self._leases = leases
        self._ownership = ownership
        self._worker_id = worker_id
        self._enabled = mode == "snapshot"
        self._max_bytes = max_bytes
        self._lease_ttl = lease_ttl
        self._clock = clock

    # -- before a turn -----------------------------------------------------------

    def before_turn(self, lease: Lease, stored_digest: str | None) -> str | None:
        """Bring the session's workspace up to its stored snapshot if this host's copy is not it.

        Args:
            lease: The turn's lease.
            stored_digest: The stored snapshot's digest, read with the lease
                (``TurnStart.workspace_digest``; ``None``: no snapshot).

        Returns:
            A notice for the agent when something could not be restored, else ``None``.

        Raises:
            redis.RedisError: Redis failed (the turn is deferred).
        """
        if not self._enabled:
            return None
        session = lease.session_key
        mark = self._read_mark(session)
        if stored_digest is None:
            if mark is not None:
                # Synced once, and the snapshot is gone: the session was reset
                # elsewhere. This host's copy belongs to the old conversation.
                remove_tree(self._env.sandbox_path(session))
                self._drop_mark(session)
            return None
        if mark is not None and mark.digest == stored_digest:
            return None
        return self._restore(session)

    def _restore(self, session: str) -> str | None:
        stored = self._store.load(session)
        if stored is None:  # reset between the two reads
            return None
        started = time.monotonic()
        failure: str | None = None
        omitted: list[Omitted] = []
        try:
            archive = decode_archive(stored.data, digest=stored.digest, max_bytes=self._max_bytes)
            omitted = list(archive.omitted)
            omitted += self._replace_workspace(session, archive.members)
        except (ToolError, OSError) as exc:
            failure = str(exc)
            log.warning("workspace of %s could not be restored: %s", session, failure)
        workspace = self._env.sandbox_dir(session)
        self._write_mark(session, SyncMark(stored.digest, fingerprint(scan_workspace(workspace))))
        log.info(
            "workspace of %s restored from %s's snapshot in %.3fs (%d entries left out)",
            session,
            stored.worker_id,
            time.monotonic() - started,
            len(omitted),
        )
        return restore_notice(
            omitted=omitted,
            lost=self._lost_processes(session),
            taken_at=stored.taken_at,
            now=self._clock(),
            failure=failure,
        )

    def _replace_workspace(self, session: str, members: Sequence[Member]) -> list[Omitted]:
        """Write ``members`` into a new directory, then put it in the workspace's place."""
        root = secure_dir(Path(self._env.sandbox_root))
        final = self._env.sandbox_path(session)
        owner = self._env.workspace_owner(session)
        staging = root / f".restore-{safe_task_id(session)}-{uuid.uuid4().hex[:8]}"
        os.mkdir(staging, 0o700)
        try:
            refused = write_members(staging, members, owner=owner)
            if owner is not None:
                os.chown(staging, owner, owner, follow_symlinks=False)
            # A volume mounted at the workspace goes with the old files; the next
            # use copies the restored ones into a new volume.
            self._env.drop_workspace_volume(session)
            remove_tree(final)
            os.rename(staging, final)
        except BaseException:
            remove_tree(staging)
            raise
        return refused

    def _lost_processes(self, session: str) -> list[LostProcess]:
        lost = []
        for record in load_table(self._tool_state, session)["items"].values():
            if isinstance(record, dict) and probe(record).state == "lost":
                lost.append(
                    LostProcess(
                        name=str(record.get("id", "?")),
                        command=self._env.redact(str(record.get("command", "")))[:200],
                    )
                )
        return lost

    # -- after a turn, and at a drain ------------------------------------------------

    def after_turn(self, lease: Lease) -> bool:
        """Store a snapshot of the session's workspace if it changed since this host last synced it.

        Returns:
            Whether a new snapshot was stored.

        Raises:
            LeaseLost: the lease was taken over or the session moved; nothing was written.
            redis.RedisError: Redis failed.
        """
        if not self._enabled:
            return False
        session = lease.session_key
        workspace = self._env.sandbox_path(session)
        if not workspace.is_dir() or workspace.is_symlink():
            return False
        try:
            return self._snapshot(lease, workspace)
        except (OSError, ToolError) as exc:  # the turn goes on; the last snapshot stays
            log.warning("workspace of %s not snapshotted: %s", session, exc)
            return False

    def _snapshot(self, lease: Lease, workspace: Path) -> bool:
        session = lease.session_key
        entries = scan_workspace(workspace)
        mark = self._read_mark(session)
        current = fingerprint(entries)
        if mark is not None and mark.fingerprint == current:
            return False
        stored_digest = self._store.stored_digest(session)
        if stored_digest is not None and (mark is None or mark.digest != stored_digest):
            # This copy does not descend from the stored snapshot (it was
            # restored over, or never synced): storing it would lose newer work.
            log.warning(
                "workspace of %s here is not the stored snapshot's; not snapshotting it", session
            )
            return False
        started = time.monotonic()
        plan = plan_snapshot(entries, max_bytes=self._max_bytes)
        members, omitted = read_members(workspace, plan)
        digest, data, raw_size = encode_archive(members, omitted)
        stored = False
        if digest != stored_digest:
            stored = self._store.save(
                lease,
                digest=digest,
                data=data,
                members=len(members),
                raw_bytes=raw_size,
                omitted=len(omitted),
            )
        self._write_mark(session, SyncMark(digest, current))
        log.info(
            "workspace of %s: %s (%d entries, %d bytes, %d compressed, %d left out) in %.3fs",
            session,
            "snapshot stored" if stored else "unchanged",
            len(members),
            raw_size,
            len(data),
            len(omitted),
            time.monotonic() - started,
        )
        return stored

    def snapshot_owned(self) -> int:
        """Drain: snapshot every idle session this worker owns whose workspace changed.

        Each session's lease is taken for the snapshot (a session whose lease
        is held, by a turn here or on its next owner, is skipped: that turn
        snapshots or restores it) and released after.

        Returns:
            How many snapshots were stored.
        """
        if not self._enabled:
            return 0
        stored = 0
        for session in self._ownership.sessions_owned_by(self._worker_id):
            if not self._env.sandbox_path(session).is_dir():
                continue
            lease = self._leases.acquire(session, self._worker_id, self._lease_ttl)
            if lease is None:
                continue
            try:
                stored += self.after_turn(lease)
            except LeaseLost as exc:  # it moved meanwhile: its new owner's copy counts
                log.info("drain: workspace of %s not snapshotted: %s", session, exc)
            finally:
                with contextlib.suppress(redis.RedisError):
                    self._leases.release(lease)
        return stored

    # -- the local sync mark ----------------------------------------------------------

    def _mark_path(self, session: str) -> Path:
        return self._env.control_path(session) / _MARK_FILE

    def _read_mark(self, session: str) -> SyncMark | None:
        try:
            fd = os.open(self._mark_path(session), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(4096)
        try:
            data = json.loads(raw)
            return SyncMark(str(data["digest"]), str(data["fingerprint"]))
        except (ValueError, KeyError, TypeError):
            return None

    def _write_mark(self, session: str, mark: SyncMark) -> None:
        directory = self._env.control_dir(session)
        tmp = directory / f".{_MARK_FILE}.{uuid.uuid4().hex[:8]}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"digest": mark.digest, "fingerprint": mark.fingerprint}, handle)
        os.replace(tmp, directory / _MARK_FILE)

    def _drop_mark(self, session: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._mark_path(session))
