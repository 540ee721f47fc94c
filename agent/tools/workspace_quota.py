"""Keeps a session from filling the disk: its workspace quota and the host's free-space reserve.

Resource limits bound one file (RLIMIT_FSIZE), not how many files a session
writes. While a sandboxed command runs, the terminal asks a
:class:`QuotaWatch` twice a second whether the command must be killed:
when the workspace has grown past its quota, or when the file system it lives
on is down to its last reserve and the workspace is still growing. Background
processes get the same check from their host-side wrapper (see
:mod:`agent.tools.background`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

CHECK_INTERVAL = 0.5
"""Seconds between two checks while a command runs."""
_MAX_ENTRIES = 200_000


def workspace_usage(root: Path, stop_above: int | None = None) -> int:
    """Bytes allocated under ``root`` (symlinks are counted, never followed).

    Args:
        root: the workspace.
        stop_above: stop counting once the total exceeds this (the caller only
            needs to know that it does).
    """
    total = 0
    entries = 0
    pending = [str(root)]
    while pending:
        try:
            scan = os.scandir(pending.pop())
        except OSError:
            continue
        with scan:
            for entry in scan:
                entries += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                if (stop_above is not None and total > stop_above) or entries > _MAX_ENTRIES:
                    return total
    return total


def disk_reserve(path: Path) -> int:
    """Bytes that must stay free on ``path``'s file system: 5 % of it, at most 1 GiB."""
    info = os.statvfs(path)
    return min(1024**3, info.f_blocks * info.f_frsize // 20)


class QuotaWatch:
    """Decides, at most once per :data:`CHECK_INTERVAL`, whether a running command must die.

    Args:
        workspace: the session's host workspace.
        quota: bytes the workspace may hold.
    """

    def __init__(self, workspace: Path, quota: int) -> None:
        self.workspace = workspace
        self.quota = quota
        # A workspace already over its quota may still be cleaned up: only growth kills.
        self._start = workspace_usage(workspace)
        self._allowed = max(quota, self._start)
        info = os.statvfs(workspace)
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
        used = workspace_usage(self.workspace, stop_above=self._allowed)
        if used > self._allowed:
            return (
                f"the workspace grew past its quota of {self.quota // 2**20} MiB; "
                "delete files or ask the operator to raise AGENT_CLUSTER_SANDBOX_WORKSPACE_MB"
            )
        info = os.statvfs(self.workspace)
        free = info.f_bavail * info.f_frsize
        # Growth seen either way: a directory the worker cannot list hides its
        # size from the walk, never from the file system's free space.
        writing = used > self._start or free < self._free_start
        if writing and free < disk_reserve(self.workspace):
            return "the disk is nearly full; the command was writing to it"
        return ""


__all__ = ["CHECK_INTERVAL", "QuotaWatch", "disk_reserve", "workspace_usage"]
