"""Run a tool's process inside the session's sandbox: ``bwrap`` (bubblewrap) or ``local``.

Every ``terminal`` command and every ``process`` background process is one
sandbox of its own, built by :meth:`Sandbox.command`:

- ``bwrap``: new mount, PID, IPC and UTS namespaces (and network, unless
  ``network: host``); only the session's workspace is writable, mounted at
  ``/workspace`` (the working directory); ``/usr`` and the library dirs and a
  short list of ``/etc`` files are read-only; a fresh ``/proc`` and ``/dev``, a
  size-capped private ``/tmp``; no other session, worker file, tool-state file
  or worker process is visible. Processes get no capabilities, ``no_new_privs``
  and an unprivileged uid: with a non-root worker, bwrap's user namespace maps
  the worker's uid to uid 1000 inside; with a root worker, bwrap runs
  privileged and ``setpriv`` drops each session to a uid of its own (so a
  session's files and process count are its own, and root-only files stay
  unreadable). A seccomp filter (:mod:`agent.tools.seccomp`) refuses new
  namespaces, the keyring, ``bpf``, ``io_uring``, mounting and other
  interfaces a command never needs. ``ulimit`` sets CPU, memory, file-size and
  process-count limits. ``--die-with-parent``: killing the sandbox's ``bwrap`` (or its
  parent) kills everything inside.
  ``bwrap`` starts with the environment the worker builds
  (:func:`~agent.tools.host_environment.host_environment`); the command's own
  (the session's) is handed over in a memory file descriptor and loaded by
  the shell that starts the command, after ``setpriv`` dropped every
  privilege, so nothing a session exports reaches a host-side or privileged
  process. ``/tmp`` is mode ``1777``, writable by the session's uid.
- ``local``: the worker's own user, file system and network, for trusted
  single-user setups only; the command's environment is loaded the same way,
  so the worker's own launches never run with the session's variables.

The workspace is handed to ``bwrap`` as a directory file descriptor opened
with ``O_NOFOLLOW``, so a symlink planted where the workspace should be is
refused instead of followed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.tools.host_environment import BASH, host_environment
from agent.tools.sandbox_config import SandboxConfig, SandboxLimits
from agent.tools.seccomp import filter_fd, host_filter
from cluster.errors import ToolError

log = logging.getLogger(__name__)

WORKSPACE = Path("/workspace")
"""Where the session's workspace appears inside a ``bwrap`` sandbox."""
INNER_UID = 1000
"""The uid a non-root worker's sandboxed processes have inside their user namespace."""
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
# Replaces the environment the shell was started with (host_environment(),
# plus the PWD and OLDPWD that bash and its cd export) by the session's, read
# NUL-separated from the descriptor in $1, which is closed afterwards. Names
# bash cannot export (exported functions) are dropped. No command
# substitution: its fork would cost more than all the rest.
_LOAD_ENVIRONMENT = (
    'mapfile -t -d "" __ac_vars <&"$1"\n'
    'eval "exec $1<&-"\n'
    "unset OLDPWD PWD " + " ".join(sorted(host_environment())) + "\n"
    'for __ac_kv in "${__ac_vars[@]}"; do export "$__ac_kv" 2>/dev/null; done\n'
    "unset __ac_kv __ac_vars\n"
)
# Inside a bwrap sandbox, after every privilege is dropped: applies the limits,
# enters the working directory (the workspace when it is gone), loads the
# session's environment, then runs the command: ac-enter ENV_FD CWD ARGV...
_ENTER = (
    "ulimit -c 0 -t {cpu} -v {mem_kb} -f {file_kb} -u {procs} || exit 126\n"
    'cd -- "$2" 2>/dev/null || cd -- {workspace} || exit 126\n'
    + _LOAD_ENVIRONMENT.replace("{", "{{").replace("}", "}}")
    + 'shift 2; exec "$@"\n'
)
# The local backend's counterpart (no limits, the host's own directories).
_ENTER_LOCAL = 'cd -- "$2" || exit 126\n' + _LOAD_ENVIRONMENT + 'shift 2; exec "$@"\n'


@dataclass(frozen=True)
class SandboxCommand:
    """What to hand to ``subprocess.Popen`` to run one command in a sandbox.

    Start it with ``env=host_environment()``: the command's own environment
    travels in a descriptor of ``pass_fds`` and is loaded by the shell that
    starts it (inside the sandbox for ``bwrap``).

    Attributes:
        argv: the full argument vector (``bwrap ...``, or ``bash`` starting the command).
        cwd: host working directory for ``Popen`` (``None`` for ``bwrap``: it
            enters the directory inside the sandbox).
        pass_fds: descriptors the sandbox needs (its environment, the workspace
            directory, the seccomp filter).
    """

    argv: list[str]
    cwd: Path | None
    pass_fds: tuple[int, ...]


def _enter_script(limits: SandboxLimits, file_bytes: int) -> str:
    return _ENTER.format(
        cpu=limits.cpu_seconds,
        mem_kb=limits.memory_bytes // 1024,
        file_kb=file_bytes // 1024,
        procs=limits.processes,
        workspace=WORKSPACE,
    )


def environment_fd(env: dict[str, str]) -> int:
    """Write ``env`` NUL-separated to a fresh memory file; return its descriptor at offset 0."""
    fd = os.memfd_create("ac-environment")
    try:
        os.write(fd, b"".join(f"{name}={value}\0".encode() for name, value in env.items()))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def session_uid(uid_base: int, workspace: Path) -> int:
    """The host uid a root worker gives the session whose workspace is ``workspace``."""
    digest = hashlib.sha256(workspace.name.encode("utf-8")).digest()
    return uid_base + int.from_bytes(digest[:4], "big") % 65536


class Sandbox:
    """Builds sandboxed commands for one backend (``bwrap`` or ``local``).

    Args:
        config: the host's sandbox settings.
        backend: the resolved backend (``auto`` already decided).
    """

    def __init__(self, config: SandboxConfig, backend: str) -> None:
        if backend not in ("bwrap", "local"):
            raise ValueError(f"backend must be bwrap or local, got {backend!r}")
        self.config = config
        self.backend = backend
        self._root = os.geteuid() == 0

    @property
    def isolated(self) -> bool:
        """True for ``bwrap``."""
        return self.backend == "bwrap"

    def visible_workspace(self, workspace: Path) -> Path:
        """The workspace path as commands see it."""
        return WORKSPACE if self.isolated else workspace

    def workspace_owner(self, workspace: Path) -> int | None:
        """The host uid that must own the workspace (``None``: the worker's own)."""
        if self.isolated and self._root:
            return session_uid(self.config.uid_base, workspace)
        return None

    def base_environment(self, workspace: Path, worker_env: dict[str, str]) -> dict[str, str]:
        """The environment every command of the session starts from.

        Args:
            workspace: the session's host workspace.
            worker_env: the worker's environment (only ``pass_env`` names are taken
                from it for ``bwrap``; ``local`` keeps its small allow-list).
        """
        visible = str(self.visible_workspace(workspace))
        if not self.isolated:
            return {}
        env = {
            "PATH": _SANDBOX_PATH,
            "HOME": visible,
            "USER": "sandbox",
            "LOGNAME": "sandbox",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
        }
        for name in self.config.pass_env:
            if name in worker_env:
                env[name] = worker_env[name]
        return env

    @contextlib.contextmanager
    def command(
        self,
        workspace: Path | None,
        argv: Sequence[str],
        *,
        cwd: str,
        env: dict[str, str],
        file_bytes: int | None = None,
    ) -> Iterator[SandboxCommand]:
        """Yield the Popen arguments for ``argv`` in the session's sandbox.

        The workspace descriptor stays open until the context exits: spawn the
        process inside the ``with`` block.

        Args:
            workspace: the session's host workspace directory (``None``: an
                empty one, for probing).
            argv: the command to run inside.
            cwd: working directory as the command sees it.
            env: its complete environment, applied by the shell that starts it
                (inside the sandbox, once every privilege is dropped), never
                seen by a program the worker starts on the host.
            file_bytes: its RLIMIT_FSIZE (default the configured file-size
                limit; the quota's accounting passes what is left of it).

        Raises:
            ToolError: the workspace is a symlink or not a directory.
        """
        with contextlib.ExitStack() as fds:
            env_fd = environment_fd(env)
            fds.callback(os.close, env_fd)
            if not self.isolated:
                enter = [BASH, "-c", _ENTER_LOCAL, "ac-enter", str(env_fd), cwd]
                yield SandboxCommand([*enter, *argv], Path(cwd), (env_fd,))
                return
            workspace_fd = open_workspace(workspace) if workspace is not None else None
            if workspace_fd is not None:
                fds.callback(os.close, workspace_fd)
            program = host_filter()
            seccomp_fd = filter_fd(program) if program is not None else None
            if seccomp_fd is not None:
                fds.callback(os.close, seccomp_fd)
            passed = tuple(fd for fd in (env_fd, workspace_fd, seccomp_fd) if fd is not None)
            limit = self.config.limits.file_bytes if file_bytes is None else file_bytes
            yield SandboxCommand(
                self._bwrap_argv(workspace, workspace_fd, seccomp_fd, env_fd, argv, cwd, limit),
                None,
                passed,
            )

    def _bwrap_argv(
        self,
        workspace: Path | None,
        fd: int | None,
        seccomp_fd: int | None,
        env_fd: int,
        argv: Sequence[str],
        cwd: str,
        file_bytes: int,
    ) -> list[str]:
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [
            bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
        ]
        if self.config.network == "none":
            args.append("--unshare-net")
        if not self._root:
            # No nested user namespaces: they would hand the sandbox capabilities
            # (over its own namespaces) and a larger kernel surface.
            args += ["--unshare-user", "--disable-userns"]
            args += ["--uid", str(INNER_UID), "--gid", str(INNER_UID)]
        args += _system_mounts()
        args += ["--proc", "/proc", "--dev", "/dev"]
        # World-writable and sticky: on a root worker the session's uid is not
        # the tmpfs' owner.
        args += ["--perms", "1777", "--size", str(self.config.limits.tmp_bytes), "--tmpfs", "/tmp"]
        if fd is not None:
            args += ["--bind-fd", str(fd), str(WORKSPACE)]
        else:
            args += ["--tmpfs", str(WORKSPACE)]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        prefix: list[str] = []
        if self._root:
            uid = session_uid(self.config.uid_base, workspace or Path("probe"))
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            prefix = [
                "/usr/bin/setpriv",
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        enter = [
            BASH,
            "-c",
            _enter_script(self.config.limits, file_bytes),
            "ac-enter",
            str(env_fd),
            cwd,
        ]
        return [*args, "--", *prefix, *enter, *argv]


@functools.cache
def _system_mounts() -> tuple[str, ...]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in _ETC_ENTRIES:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    return tuple(args)


def open_workspace(workspace: Path) -> int:
    """Open the workspace directory without following a symlink at its last component.

    Raises:
        ToolError: it is a symlink or not a directory.
    """
    try:
        fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ToolError(
            f"the session's workspace {workspace} is not a plain directory ({exc.strerror}); "
            "it is refused rather than followed"
        ) from exc
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolError(f"the session's workspace {workspace} is not a directory")
    return fd


def bwrap_problem(config: SandboxConfig) -> str | None:
    """Why ``bwrap`` cannot sandbox tools on this host, or ``None`` when it can.

    Runs a trivial command in a sandbox built exactly as real ones are
    (cached per config and ``bwrap`` program for the life of the process).
    """
    return _probe(config, shutil.which("bwrap"))


@functools.lru_cache(maxsize=8)
def _probe(config: SandboxConfig, bwrap: str | None) -> str | None:
    if bwrap is None:
        return "the bwrap program is not installed"
    sandbox = Sandbox(config, "bwrap")
    try:
        with sandbox.command(
            None, ["true"], cwd=str(WORKSPACE), env={"PATH": _SANDBOX_PATH}
        ) as spec:
            result = subprocess.run(
                spec.argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=20,
                env=host_environment(),
                pass_fds=spec.pass_fds,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip() or f"exit {result.returncode}"
        return f"bwrap failed: {detail}"
    return None


BWRAP_HELP = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user "
    "namespaces (sysctl kernel.unprivileged_userns_clone=1; in a container, a seccomp "
    "profile that permits them), or set AGENT_CLUSTER_SANDBOX=local to run tools "
    "unsandboxed as the worker's user (only for trusted single-user setups)"
)


def resolve_sandbox(config: SandboxConfig) -> Sandbox | str:
    """Decide the backend for ``config``: a :class:`Sandbox`, or why tools must be refused.

    ``bwrap`` that cannot run gives a refusal message; ``auto`` falls back to
    ``local`` with a one-line notice; ``local`` logs a warning. Each message
    is logged once per process, config and ``bwrap`` program.
    """
    return _resolve(config, shutil.which("bwrap"))


@functools.lru_cache(maxsize=8)
def _resolve(config: SandboxConfig, bwrap: str | None) -> Sandbox | str:
    if config.backend == "local":
        log.warning(
            "AGENT_CLUSTER_SANDBOX=local: tools run unsandboxed as the worker's user, with its "
            "files, network and processes in reach; use it only for trusted single-user setups"
        )
        return Sandbox(config, "local")
    problem = _probe(config, bwrap)
    if problem is None:
        log.info(
            "tools run in a bwrap sandbox per command (network %s, seccomp %s)",
            config.network,
            "on" if host_filter() is not None else "unavailable on this machine",
        )
        return Sandbox(config, "bwrap")
    if config.backend == "auto":
        log.warning("notice: no bwrap sandbox here (%s); tools run unsandboxed (local)", problem)
        return Sandbox(config, "local")
    refusal = f"tools are disabled: the bwrap sandbox cannot run on this host ({problem}); " + (
        BWRAP_HELP
    )
    log.error("%s", refusal)
    return refusal


__all__ = [
    "BWRAP_HELP",
    "INNER_UID",
    "WORKSPACE",
    "Sandbox",
    "SandboxCommand",
    "bwrap_problem",
    "environment_fd",
    "open_workspace",
    "resolve_sandbox",
    "session_uid",
]
