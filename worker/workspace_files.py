"""Reading a workspace into a snapshot and writing a snapshot into a new workspace.

Everything goes through directory file descriptors opened with ``O_NOFOLLOW``:
a workspace is written by sandboxed commands, so any name in it may be a
symlink, a fifo or a device, and may be swapped while it is read. Scanning
lists entries with ``lstat`` (links are listed, never followed), reads only
regular files (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``), and never
descends into a link. Restoring writes into a directory of its own creation,
component by component (``mkdir`` + ``O_NOFOLLOW | O_DIRECTORY``, files
``O_CREAT | O_EXCL | O_NOFOLLOW``), after :func:`check_member_path` accepted
the member's path, so no member can land outside it. Created files and
directories are handed to the uid the sandbox gives the workspace.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ToolError
from worker.workspace_archive import (
    Member,
    Omitted,
    ScannedEntry,
    SnapshotPlan,
    check_member_path,
)

__all__ = ["read_members", "scan_workspace", "write_members"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special"


def _open_root(path: Path, what: str) -> int:
    """Open a workspace-like directory without following a link at ``path`` itself.

    Raises:
        ToolError: ``path`` is a symlink or not a directory.
    """
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise ToolError(f"{what} {path} is not a plain directory ({exc.strerror})") from None


def scan_workspace(workspace: Path) -> list[ScannedEntry]:
    """List every entry under ``workspace`` (not the directory itself), never following a link.

    Raises:
        ToolError: ``workspace`` is a symlink or not a directory.
    """
    root = _open_root(workspace, "workspace")
    entries: list[ScannedEntry] = []
    try:
        _scan_dir(root, b"", entries)
    finally:
        os.close(root)
    return entries


def _scan_dir(dir_fd: int, prefix: bytes, out: list[ScannedEntry]) -> None:
    try:
        names = sorted(os.fsencode(n) for n in os.listdir(dir_fd))
    except OSError:
        if prefix:
            out[-1] = ScannedEntry(prefix.rstrip(b"/"), "unreadable", 0)
        return
    for name in names:
        path = prefix + name
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:  # gone meanwhile
            continue
        kind = _kind(info.st_mode)
        out.append(
            ScannedEntry(
                path,
                kind,  # type: ignore[arg-type]
                stat.S_IMODE(info.st_mode),
                info.st_size if kind == "file" else 0,
                info.st_mtime_ns,
                info.st_ino,
            )
        )
        if kind != "dir":
            continue
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError:  # unreadable, or swapped for something else meanwhile
            out[-1] = ScannedEntry(path, "unreadable", 0)
            continue
        try:
            _scan_dir(child, path + b"/", out)
        finally:
            os.close(child)


def read_members(workspace: Path, plan: SnapshotPlan) -> tuple[list[Member], list[Omitted]]:
    """Read the planned members' contents; what changed or vanished meanwhile is listed as omitted.

    Raises:
        ToolError: ``workspace`` is a symlink or not a directory.
    """
    members: list[Member] = []
    omitted = list(plan.omitted)
    root = _open_root(workspace, "workspace")
    try:
        for entry in plan.members:
            if entry.kind == "dir":
                members.append(Member(entry.path, entry.mode, None))
                continue
            data = _read_file(root, entry.path, entry.size)
            if data is None:
                omitted.append(
                    Omitted(entry.path, entry.size, "changed or unreadable while snapshotting")
                )
            else:
                members.append(Member(entry.path, entry.mode, data))
    finally:
        os.close(root)
    return members, omitted


def _read_file(root: int, path: bytes, size: int) -> bytes | None:
    """The bytes of a regular file of exactly ``size`` bytes, or None (link, special, changed)."""
    parts = path.split(b"/")
    fds: list[int] = []
    try:
        parent = root
        for part in parts[:-1]:
            parent = os.open(part, _DIR_FLAGS, dir_fd=parent)
            fds.append(parent)
        fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        left = size + 1  # one byte more tells a file that grew
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) == size else None
    except OSError:
        return None
    finally:
        for fd in reversed(fds):
            os.close(fd)


@dataclass(frozen=True)
class _Owner:
    uid: int
    gid: int

    def give(self, fd: int) -> None:
        os.fchown(fd, self.uid, self.gid)


def _owner_of(uid: int | None) -> _Owner | None:
    if uid is None or uid == os.geteuid():
        return None
    return _Owner(uid, uid)  # the sandbox gives each session uid its own group id


def write_members(target: Path, members: Sequence[Member], *, owner: int | None) -> list[Omitted]:
    """Write ``members`` into ``target``, an empty directory this process just created.

    A member whose path is unsafe, or whose parent is not a directory of the
    snapshot, is not written and comes back in the returned list.

    Args:
        target: the new workspace directory (must be empty, owned by this process).
        members: the snapshot's members.
        owner: the uid the sandbox would give the files (``None``: this process' user).

    Raises:
        ToolError: ``target`` is not a plain directory.
    """
    give = _owner_of(owner)
    refused: list[Omitted] = []
    root = _open_root(target, "restore target")
    try:
        # Parents before children: sorted by path, "a" < "a/b".
        for member in sorted(members, key=lambda m: m.path):
            try:
                _write_member(root, member, give)
            except (OSError, ToolError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                size = 0 if member.data is None else len(member.data)
                refused.append(Omitted(member.path, size, f"not restored ({reason})"))
    finally:
        os.close(root)
    return refused


def _write_member(root: int, member: Member, give: _Owner | None) -> None:
    parts = check_member_path(member.path).split(b"/")
    fds: list[int] = []
    try:
        parent = root
        for part in parts[:-1]:
            parent = _enter_dir(parent, part, 0o700, give)
            fds.append(parent)
        name = parts[-1]
        if member.data is None:
            fds.append(_enter_dir(parent, name, member.mode, give))
            return
        fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=parent)
        fds.append(fd)
        view = memoryview(member.data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, member.mode & 0o777)
        if give is not None:
            give.give(fd)
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _enter_dir(parent: int, name: bytes, mode: int, give: _Owner | None) -> int:
    """Open (creating it if missing) directory ``name`` under ``parent``; never a link."""
    created = True
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ToolError(f"{name!r} is not a directory of the snapshot") from None
        raise
    if created:
        # The owner keeps rwx on every directory: the worker must be able to clean up.
        os.fchmod(fd, (mode & 0o777) | 0o700)
        if give is not None:
            give.give(fd)
    return fd
