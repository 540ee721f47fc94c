"""A session's workspace as a file system of its own: a sparse ext4 image loop-mounted there.

The kernel then enforces the quota: a write past it fails with ``ENOSPC`` ("No
space left on device") at once, whatever the number of processes writing in
parallel, whether they run as terminal commands or background processes, and
however many files the workspace holds; creating more files than the image has
inodes fails the same way. Nothing has to watch, scan or kill.

Mounting needs a root worker, ``mkfs.ext4`` and loop devices;
:func:`volume_problem` says why volumes cannot be used here, and the caller
falls back to accounting (:mod:`agent.tools.workspace_quota`).

Layout and life cycle:

- the image is ``control/<task>/workspace.ext4`` (outside every sandbox, ``0600``,
  the worker's), sparse: the host disk holds only what the session wrote (the
  mount uses ``discard``, so deleted files give their blocks back);
- it is created and mounted at ``sandboxes/<task>`` (``nosuid,nodev``) when the
  task's workspace is first used; a plain workspace that already holds files
  (made before volumes were on, or just restored from a snapshot) is copied
  into a new volume, unless it is larger than the quota (then it stays plain
  and accounting applies to it);
- it stays mounted across soft releases; a stopping worker unmounts the
  volumes of its workspaces (:func:`mounted_volumes`). A sandbox still running
  (a background process) keeps its file system alive in its own mount
  namespace, and mounting the image again reuses that loop device, so both
  see one file system. A worker that finds the image unmounted (after a stop,
  a crash or a reboot) mounts it again at the task's next command;
- a hard teardown unmounts it (lazily when a process still holds it) and
  deletes the image; the loop device is freed with the mount (autoclear).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.tools.host_environment import HOST_PATH, host_environment

log = logging.getLogger(__name__)

IMAGE_NAME = "workspace.ext4"
"""File name of a task's image inside its control directory."""
_BYTES_PER_FILE = 8192
_MIN_FILES = 64
_MOUNT_OPTIONS = "loop,nosuid,nodev,discard"
# Host-side programs run with this environment only, and by absolute path.


@dataclass(frozen=True)
class VolumeSpec:
    """What one workspace volume holds at most.

    Attributes:
        size: bytes of the image (the workspace quota).
        files: inodes of the image (the file-count limit).
    """

    size: int
    files: int

    @classmethod
    def for_quota(cls, quota: int, max_files: int) -> VolumeSpec:
        """The volume of a ``quota``-byte workspace: at most one file per 8 KiB of it."""
        return cls(size=quota, files=max(_MIN_FILES, min(max_files, quota // _BYTES_PER_FILE)))


@dataclass(frozen=True)
class _Programs:
    mkfs: str
    mount: str
    umount: str
    cp: str


def _programs() -> _Programs | str:
    found = {
        name: shutil.which(name, path=HOST_PATH) for name in ("mkfs.ext4", "mount", "umount", "cp")
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: e2fsprogs, mount, coreutils)"
    return _Programs(
        mkfs=str(found["mkfs.ext4"]),
        mount=str(found["mount"]),
        umount=str(found["umount"]),
        cp=str(found["cp"]),
    )


def _run(argv: list[str]) -> None:
    """Run a host program with the worker-built environment; raise OSError with its stderr."""
    result = subprocess.run(
        argv,
        env=host_environment({"LC_ALL": "C"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip() or f"exit {result.returncode}"
        raise OSError(f"{os.path.basename(argv[0])} failed: {detail}")


def volume_problem() -> str | None:
    """Why workspace volumes cannot be used on this host, or ``None`` when they can.

    Mounts a 1 MiB image once per process to find out (a container may have
    root but no loop devices).
    """
    return _probe()


@functools.cache
def _probe() -> str | None:
    if os.geteuid() != 0:
        return "the worker is not root (mounting needs it)"
    programs = _programs()
    if isinstance(programs, str):
        return programs
    with tempfile.TemporaryDirectory(prefix="agent-volume-probe-") as tmp:
        image, mountpoint = Path(tmp) / "probe.ext4", Path(tmp) / "mnt"
        mountpoint.mkdir()
        try:
            _make_image(programs, image, VolumeSpec(size=1024 * 1024, files=_MIN_FILES), owner=0)
            _run([programs.mount, "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(mountpoint)])
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _run([programs.umount, str(mountpoint)])
    return None


def volumes_chosen(mode: str) -> bool | str:
    """Whether workspaces are volumes under ``AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=mode``.

    Returns:
        True or False, or why tools must be refused (``volume`` required but
        impossible here). ``auto`` without volumes logs a notice once per process.
    """
    if mode == "watch":
        return False
    problem = volume_problem()
    if problem is None:
        return True
    if mode == "volume":
        _refusal_once(problem)
        return (
            f"AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=volume, but workspace volumes cannot be "
            f"mounted here ({problem}); run the worker as root with e2fsprogs and loop "
            "devices, or set it to watch"
        )
    _notice_once(problem)
    return False


@functools.cache
def _refusal_once(problem: str) -> None:
    log.error("tools are refused: AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=volume, but %s", problem)


@functools.cache
def _notice_once(problem: str) -> None:
    log.warning(
        "notice: workspace quotas are enforced by accounting, not by the kernel (%s)", problem
    )


def _make_image(programs: _Programs, image: Path, spec: VolumeSpec, *, owner: int) -> None:
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, spec.size)
    finally:
        os.close(fd)
    _run(
        [
            programs.mkfs,
            "-q",
            "-F",
            "-m",
            "0",
            "-N",
            str(spec.files),
            "-E",
            f"lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={owner}:{owner}",
            str(image),
        ]
    )


@contextlib.contextmanager
def _locked(image: Path) -> Iterator[None]:
    """Serialize volume changes of one task between the threads and processes of this host."""
    fd = os.open(
        image.with_name(image.name + ".lock"),
        os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_volume(workspace: Path) -> bool:
    """True when ``workspace`` is a mounted volume (the kernel enforces its quota)."""
    return os.path.ismount(workspace)


def mount_volume(
    workspace: Path,
    image: Path,
    spec: VolumeSpec,
    *,
    owner: int,
    remove_tree: Callable[[Path], None],
) -> bool:
    """Make ``workspace`` (an existing, checked directory) a mounted volume backed by ``image``.

    Args:
        workspace: the task's workspace directory.
        image: its image file (in the task's control directory).
        spec: the size and file count of a new image.
        owner: the uid (and gid) the workspace's root belongs to.
        remove_tree: deletes a directory the session wrote (even one it made unwritable).

    Returns:
        False when the workspace stays a plain directory: it holds more than
        the volume can (logged; accounting applies to it).

    Raises:
        OSError: the image could not be created or mounted.
    """
    programs = _programs()
    if isinstance(programs, str):
        raise OSError(programs)
    with _locked(image):
        if is_volume(workspace):
            return True
        if not image.exists():
            with os.scandir(workspace) as entries:
                holds_files = any(True for _ in entries)
            if holds_files and not _adopt(programs, workspace, image, spec, owner, remove_tree):
                return False
            if not image.exists():
                _make_image(programs, image, spec, owner=owner)
        _run([programs.mount, "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(workspace)])
        with contextlib.suppress(OSError):
            os.rmdir(workspace / "lost+found")  # mkfs's, root-owned: not the session's
        os.chown(workspace, owner, owner)
        os.chmod(workspace, 0o700)
        return True


def _adopt(
    programs: _Programs,
    workspace: Path,
    image: Path,
    spec: VolumeSpec,
    owner: int,
    remove_tree: Callable[[Path], None],
) -> bool:
    """Copy a plain workspace's files into a new image and empty the directory.

    Returns False (and leaves everything as it was) when they do not fit.
    """
    staging = Path(tempfile.mkdtemp(prefix=".adopt-", dir=image.parent))
    try:
        _make_image(programs, image, spec, owner=owner)
        _run([programs.mount, "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(staging)])
        try:
            with contextlib.suppress(OSError):
                os.rmdir(staging / "lost+found")
            # -a keeps owners, modes, symlinks (never followed) and special files.
            _run([programs.cp, "-a", "--", f"{workspace}/.", f"{staging}/"])
        finally:
            _run([programs.umount, str(staging)])
    except OSError as exc:
        image.unlink(missing_ok=True)
        log.warning(
            "workspace %s stays a plain directory (quota by accounting): %s", workspace, exc
        )
        return False
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(staging)
    with os.scandir(workspace) as entries:
        for entry in list(entries):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            else:
                Path(entry.path).unlink(missing_ok=True)
    return True


def unmount_volume(workspace: Path) -> None:
    """Unmount ``workspace`` if it is a volume; lazily when a process still holds it open."""
    programs = _programs()
    if isinstance(programs, str) or not is_volume(workspace):
        return
    try:
        _run([programs.umount, str(workspace)])
    except OSError:
        _run([programs.umount, "--lazy", str(workspace)])


def _octal(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 8))


def mounted_volumes(root: Path) -> list[Path]:
    """The volumes mounted in ``root`` or below, deepest first (from ``/proc/self/mountinfo``)."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" ")
            # Field 5 is the mount point (octal escapes for spaces and the like).
            point = re.sub(r"\\([0-7]{3})", _octal, fields[4]) if len(fields) > 4 else ""
            if point.startswith(prefix) and " - ext4 " in line:
                found.append(Path(point))
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def drop_volume(workspace: Path, image: Path) -> None:
    """Unmount the task's volume and delete its image (its files go with it)."""
    if not image.parent.is_dir():
        unmount_volume(workspace)
        return
    with _locked(image):
        unmount_volume(workspace)
        image.unlink(missing_ok=True)


__all__ = [
    "IMAGE_NAME",
    "VolumeSpec",
    "drop_volume",
    "is_volume",
    "mount_volume",
    "mounted_volumes",
    "unmount_volume",
    "volume_problem",
    "volumes_chosen",
]
