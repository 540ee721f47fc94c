"""Keeps a session from filling the disk: its workspace quota and the host's free-space reserve.

Two ways to enforce the quota, chosen per workspace:

- a **volume** (:mod:`agent.tools.workspace_volume`, root workers): the
  kernel refuses every write past the quota and every file past the inode
  count; a :class:`QuotaWatch` then only watches the host disk's reserve;
- **accounting** (every other worker): each command starts with
  ``RLIMIT_FSIZE`` set to what is left of the quota (no single file can take
  more), and twice a second while it runs a full scan of the workspace (no
  file-count cut-off) decides whether it must be killed with its sandbox.
  Several processes writing at once can still overshoot by what they write
  between two checks.

Either way the command is killed when the file system it writes to is down
to its last reserve and it is still growing. Background processes get the
same checks from their host-side wrapper (see :mod:`agent.tools.background`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.tools.sandbox_config import SandboxLimits
from agent.tools.workspace_volume import is_volume

CHECK_INTERVAL = 0.5
"""Seconds between two checks while a command runs."""


def workspace_usage(root: Path, stop_above: int | None = None) -> int:
    """Bytes allocated under ``root`` (symlinks are counted, never followed).

    Every entry is counted, however many there are.

    Args:
        root: the workspace.
        stop_above: stop counting once the total exceeds this (the caller only
            needs to know that it does).
    """
    total = 0
    pending = [str(root)]
    while pending:
        try:
            scan = os.scandir(pending.pop())
        except OSError:
            continue
        with scan:
            for entry in scan:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                if stop_above is not None and total > stop_above:
                    return total
    return total


def disk_reserve(path: Path) -> int:
    """Bytes that must stay free on ``path``'s file system: 5 % of it, at most 1 GiB."""
    info = os.statvfs(path)
    return min(1024**3, info.f_blocks * info.f_frsize // 20)


class QuotaWatch:
    """The quota of one command: its file-size limit, and whether it must die now.

    :meth:`check` looks at most once per :data:`CHECK_INTERVAL`.

    Args:
        workspace: the session's host workspace.
        limits: the sandbox's limits (``workspace_bytes`` is the quota).

    Attributes:
        quota: bytes the workspace may hold, or ``None`` when it is a volume
            (the kernel enforces it).
        disk: the directory whose file system's free space is watched (the
            workspace; for a volume, the host directory it is mounted in).
        file_bytes: the command's ``RLIMIT_FSIZE``: the configured file-size
            limit, at most what is left of the quota.
    """

    def __init__(self, workspace: Path, limits: SandboxLimits) -> None:
        self.workspace = workspace
        volume = is_volume(workspace)
        self.quota: int | None = None if volume else limits.workspace_bytes
        self.disk = workspace.parent if volume else workspace
        # A workspace already over its quota may still be cleaned up: only growth kills.
        self._start = 0 if self.quota is None else workspace_usage(workspace)
        self._allowed = 0 if self.quota is None else max(self.quota, self._start)
        left = limits.file_bytes if self.quota is None else max(0, self.quota - self._start)
        self.file_bytes = min(limits.file_bytes, left)
        info = os.statvfs(self.disk)
        self._free_start = info.f_bavail * info.f_frsize
        self._next = 0.0

    def check(self, now: float) -> str:
        """Return why the command must be killed now, or ``""``.

        Args:
            now: a monotonic timestamp.
        """
        if now < self._next:
            return ""
        self._next = now + CHECK_INTERVAL
        used = 0
        if self.quota is not None:
            used = workspace_usage(self.workspace, stop_above=self._allowed)
            if used > self._allowed:
                return (
                    f"the workspace grew past its quota of {self.quota // 2**20} MiB; "
                    "delete files or ask the operator to raise AGENT_CLUSTER_SANDBOX_WORKSPACE_MB"
                )
        info = os.statvfs(self.disk)
        free = info.f_bavail * info.f_frsize
        # Growth seen either way: a directory the worker cannot list hides its
        # size from the walk, never from the file system's free space.
        writing = used > self._start or free < self._free_start
        if writing and free < disk_reserve(self.disk):
            return "the disk is nearly full; the command was writing to it"
        return ""


__all__ = ["CHECK_INTERVAL", "QuotaWatch", "disk_reserve", "workspace_usage"]
