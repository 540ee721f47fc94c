"""Where a task's tools live: its workspace, its control files, its state, its sandbox.

A :class:`ToolEnvironment` is a small frozen value (directories, a
``ToolStateStore``, the host's sandbox settings and the secrets to redact)
and holds no per-task state of its own: a brand-new agent for the same task
id, built from an equal environment, finds the task's files, terminal session,
background processes, todo list and memory notes again. Only
:meth:`ToolEnvironment.teardown` (an agent's hard ``close()``) removes them.

Layout under the home directory (``$AGENT_CLUSTER_HOME``, default the
per-user data directory), every directory ``0700`` and owned by the worker's
user (a root worker hands each workspace to the session's own uid)::

    sandboxes/<task>/   the task's workspace, the only place its commands may write
                        (a mounted volume of its own where the kernel enforces the
                        quota: see :mod:`agent.tools.workspace_volume`)
    control/<task>/     background-process logs and exit files, the workspace's
                        volume image, outside the sandbox
    tool-state/         the file-backed state store (a worker uses Redis instead)
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.tools.background import CompletionWatcher, kill_task_processes
from agent.tools.redaction import SecretRedactor
from agent.tools.sandbox import Sandbox, resolve_sandbox, session_uid
from agent.tools.sandbox_config import HOME_ENV_VAR, SandboxConfig, default_home
from agent.tools.state import FileToolStateStore, ToolStateStore, safe_task_id
from agent.tools.workspace_volume import (
    IMAGE_NAME,
    VolumeSpec,
    drop_volume,
    is_volume,
    mount_volume,
    mounted_volumes,
    unmount_volume,
    volumes_chosen,
)
from cluster.errors import ToolError

log = logging.getLogger(__name__)


def _unlock(path: str) -> None:
    """Make a directory writable by its owner, without following a symlink to it."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        # An O_PATH descriptor works without read permission; chmod through its
        # /proc link changes that very directory.
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, never following a symlink.

    A sandboxed command may leave directories it made unwritable (``chmod 0``)
    to keep its files from being deleted; their owner (the worker, or root)
    makes them writable again first, each opened with ``O_NOFOLLOW``.
    """
    if not os.path.lexists(path):
        return
    _unlock(str(path))
    for parent, dirs, _files in os.walk(path, topdown=True, followlinks=False):
        for name in dirs:
            _unlock(os.path.join(parent, name))
    shutil.rmtree(path, ignore_errors=True)


def _hand_over(path: Path, owner: int) -> None:
    """Give ``path`` and everything under it to ``owner`` (symlinks are not followed)."""
    gid = os.getegid() if owner == os.geteuid() else owner
    os.chown(path, owner, gid, follow_symlinks=False)
    for parent, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), owner, gid, follow_symlinks=False)


def secure_dir(
    path: Path, *, owner: int | None = None, adoptable: frozenset[int] = frozenset()
) -> Path:
    """Create ``path`` (and missing parents) as ``0700`` directories; refuse anything planted.

    The final directory must be a real directory (not a symlink) owned by
    this process' user, or by ``owner`` when given. A directory this process
    creates, or one owned by a uid in ``adoptable`` (uids the worker itself
    gave it, e.g. before a backend change), is handed to the expected owner.

    Raises:
        ToolError: it is a symlink, not a directory, or owned by someone else.
    """
    if not path.parent.exists():
        secure_dir(path.parent)
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        created = False
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ToolError(f"{path} is not a plain directory (a symlink or file was put there)")
    expected = os.geteuid() if owner is None else owner
    if info.st_uid != expected and (created or info.st_uid in adoptable):
        _hand_over(path, expected)
        info = os.lstat(path)
    if info.st_uid != expected:
        raise ToolError(
            f"{path} is owned by uid {info.st_uid}, not {expected}; someone else created it, "
            "so it is not used (remove it or point AGENT_CLUSTER_HOME elsewhere)"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


@dataclass(frozen=True)
class ToolEnvironment:
    """The directories, state store and sandbox the tools of every task use.

    Attributes:
        sandbox_root: parent directory of the per-task workspaces.
        state: where tools persist per-task state (cwd, env, processes, todo, memory).
        sandbox_config: the host's sandbox settings (default: from the environment).
        control_root: parent of the per-task control directories (logs and exit
            files of background processes); default ``sandbox_root/../control``.
        redactor: secrets removed from every tool result (default: the secret
            values of this process' environment; a worker also gives the
            password of the Redis URL it read from a file or settings file).
        completion_watcher: who reports the end of a ``notify_on_complete``
            background process to its session (a cluster worker sets one per
            turn; ``None``: the option is refused).
    """

    sandbox_root: Path
    state: ToolStateStore
    sandbox_config: SandboxConfig = field(default_factory=SandboxConfig.from_env)
    control_root: Path | None = None
    redactor: SecretRedactor = field(default_factory=SecretRedactor.from_environ, repr=False)
    completion_watcher: CompletionWatcher | None = field(default=None, repr=False, compare=False)

    @classmethod
    def default(
        cls,
        home: Path | str | None = None,
        *,
        sandbox: SandboxConfig | None = None,
        redactor: SecretRedactor | None = None,
    ) -> ToolEnvironment:
        """Build the file-backed environment of this host.

        Resolves the sandbox backend and the workspace quota's enforcement at
        once, so a worker logs at start-up that tools run unsandboxed
        (``local``) or are refused (``bwrap`` cannot run here), or that quotas
        are accounted because volumes cannot be mounted here.

        Args:
            home: base directory; defaults to ``$AGENT_CLUSTER_HOME`` or the
                per-user data directory. Workspaces go to ``home/sandboxes``,
                control files to ``home/control``, tool state to ``home/tool-state``.
            sandbox: sandbox settings; default from ``AGENT_CLUSTER_SANDBOX*``.
            redactor: the secrets removed from tool results; default those of
                this process' environment (a worker adds its Redis URL's password).
        """
        base = Path(home) if home is not None else default_home()
        config = sandbox if sandbox is not None else SandboxConfig.from_env()
        resolved = resolve_sandbox(config)
        if isinstance(resolved, Sandbox) and resolved.isolated:
            volumes_chosen(config.workspace_fs)  # tries a mount once; logs a fallback or refusal
        return cls(
            sandbox_root=base / "sandboxes",
            state=FileToolStateStore(base / "tool-state"),
            sandbox_config=config,
            control_root=base / "control",
            redactor=redactor if redactor is not None else SecretRedactor.from_environ(),
        )

    def with_state(self, store: ToolStateStore) -> ToolEnvironment:
        """Return a copy that persists tool state in ``store`` (e.g. the lease-fenced Redis one)."""
        return replace(self, state=store)

    def sandbox(self) -> Sandbox:
        """The sandbox tool processes run in.

        Raises:
            ToolError: the configured ``bwrap`` backend cannot run on this host
                (the message says why and what to do).
        """
        resolved = resolve_sandbox(self.sandbox_config)
        if isinstance(resolved, str):
            raise ToolError(resolved)
        return resolved

    def sandbox_path(self, task_id: str) -> Path:
        """Return the task's workspace directory without creating it."""
        return Path(self.sandbox_root) / safe_task_id(task_id)

    def sandbox_dir(self, task_id: str) -> Path:
        """Return the task's workspace, creating it (``0700``) on first use.

        With a root worker and the ``bwrap`` backend it belongs to the
        session's own uid; otherwise to the worker's user.

        Raises:
            ToolError: something other than the task's own directory is in its place.
        """
        path = self.sandbox_path(task_id)
        owner = self.workspace_owner(task_id)
        # A root worker may find the workspace still owned by the uid it gave
        # the session under the other backend (or by itself): it takes it back.
        adoptable = (
            frozenset({0, session_uid(self.sandbox_config.uid_base, path)})
            if os.geteuid() == 0
            else frozenset()
        )
        secure_dir(Path(self.sandbox_root))
        secure_dir(path, owner=owner, adoptable=adoptable)
        if self.uses_volumes():
            self._mount_volume(task_id, path, os.geteuid() if owner is None else owner)
        return path

    def uses_volumes(self) -> bool:
        """True when bwrap workspaces are volumes whose quota the kernel enforces.

        Raises:
            ToolError: ``AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=volume`` and volumes
                cannot be mounted here (the message says why and what to do).
        """
        resolved = resolve_sandbox(self.sandbox_config)
        if not (isinstance(resolved, Sandbox) and resolved.isolated):
            return False
        chosen = volumes_chosen(self.sandbox_config.workspace_fs)
        if isinstance(chosen, str):
            raise ToolError(chosen)
        return chosen

    def _mount_volume(self, task_id: str, path: Path, owner: int) -> None:
        limits = self.sandbox_config.limits
        spec = VolumeSpec.for_quota(limits.workspace_bytes, limits.workspace_files)
        try:
            mount_volume(
                path,
                self.control_dir(task_id) / IMAGE_NAME,
                spec,
                owner=owner,
                remove_tree=remove_tree,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(
                f"the workspace volume could not be mounted ({exc}); set "
                "AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=watch to enforce the quota by accounting"
            ) from exc

    def unmount_volumes(self) -> int:
        """Unmount every workspace volume of this environment (a worker stops); return how many.

        Images stay: each task's next command mounts its volume again with its files.
        """
        unmounted = 0
        for workspace in mounted_volumes(Path(self.sandbox_root)):
            try:
                unmount_volume(workspace)
                unmounted += 1
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.error("workspace volume %s not unmounted: %s", workspace, exc)
        return unmounted

    def drop_workspace_volume(self, task_id: str) -> None:
        """Unmount the task's workspace volume and delete its image (its files with it).

        For a caller about to replace or delete the workspace (teardown, a
        snapshot restore); the next use makes a new volume from what it finds.
        """
        workspace = self.sandbox_path(task_id)
        image = self.control_path(task_id) / IMAGE_NAME
        if is_volume(workspace) or image.exists():
            drop_volume(workspace, image)

    def workspace_owner(self, task_id: str) -> int | None:
        """The host uid the task's workspace and its files belong to (``None``: the worker's own).

        With a root worker and the ``bwrap`` backend, the session's own uid.
        """
        resolved = resolve_sandbox(self.sandbox_config)
        if not isinstance(resolved, Sandbox):
            return None
        return resolved.workspace_owner(self.sandbox_path(task_id))

    def workspace(self, task_id: str) -> tuple[Sandbox, Path]:
        """The sandbox and the (created, correctly owned) workspace of a task's next command.

        Raises:
            ToolError: tools are refused on this host, or the workspace is not the task's own.
        """
        return self.sandbox(), self.sandbox_dir(task_id)

    def control_path(self, task_id: str) -> Path:
        """Return the task's control directory (outside its sandbox) without creating it."""
        root = self.control_root or Path(self.sandbox_root).parent / "control"
        return root / safe_task_id(task_id)

    def control_dir(self, task_id: str) -> Path:
        """Return the task's control directory, creating it (``0700``) on first use."""
        return secure_dir(self.control_path(task_id))

    def redact(self, text: str) -> str:
        """``text`` without any secret the worker knows (see :attr:`redactor`)."""
        return self.redactor.redact(text)

    def teardown(self, task_id: str) -> None:
        """HARD end of a task: kill its sandboxes, delete its workspace, control files, state.

        Never touches another task's processes, files or state. Idempotent.
        """
        sandbox = self.sandbox_path(task_id)
        kill_task_processes(self.state, task_id, sandbox)
        try:
            self.drop_workspace_volume(task_id)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("workspace volume of %s not unmounted: %s", task_id, exc)
        for path in (sandbox, self.control_path(task_id)):
            for _attempt in range(3):  # a process dying just now may still have been writing
                remove_tree(path)
                if not os.path.lexists(path):
                    break
        self.state.delete_task(task_id)


__all__ = ["HOME_ENV_VAR", "ToolEnvironment", "default_home", "remove_tree", "secure_dir"]
