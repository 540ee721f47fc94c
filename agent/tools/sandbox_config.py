"""How tool processes are sandboxed on this host: backend, network, limits, home directory.

Read from the worker's own environment (never from Redis, so whoever can
write the cluster config cannot switch the sandbox off):

==========================================  ====================================================
variable                                    meaning (default)
==========================================  ====================================================
``AGENT_CLUSTER_HOME``                      base of sandboxes, control files and tool state
                                            (``$XDG_DATA_HOME/agent-cluster``, else
                                            ``~/.local/share/agent-cluster``)
``AGENT_CLUSTER_SANDBOX``                   ``bwrap`` (default), ``local`` (no sandbox, trusted
                                            single-user setups only) or ``auto`` (``bwrap``
                                            where it works, else ``local`` with a notice; what
                                            the embedded demo uses)
``AGENT_CLUSTER_SANDBOX_NETWORK``           ``none`` (default: own empty network namespace)
                                            or ``host``
``AGENT_CLUSTER_SANDBOX_ENV``               comma-separated names of worker variables passed
                                            into the sandbox (default none)
``AGENT_CLUSTER_SANDBOX_CPU_SECONDS``       CPU seconds per process (600)
``AGENT_CLUSTER_SANDBOX_MEMORY_MB``         address space per process, MiB (4096)
``AGENT_CLUSTER_SANDBOX_FILE_MB``           largest file a process may write, MiB (1024)
``AGENT_CLUSTER_SANDBOX_PROCESSES``         processes per sandbox (256)
``AGENT_CLUSTER_SANDBOX_WORKSPACE_MB``      most a session's workspace may hold, MiB (2048)
``AGENT_CLUSTER_SANDBOX_WORKSPACE_FILES``   most files (inodes) a workspace volume may hold, at
                                            most one per 8 KiB of the quota (100000)
``AGENT_CLUSTER_SANDBOX_WORKSPACE_FS``      how the quota is enforced: ``volume`` (a size-limited
                                            ext4 image mounted at the workspace; needs a root
                                            worker), ``watch`` (accounting: per-command
                                            RLIMIT_FSIZE from what is left, usage checks, kill)
                                            or ``auto`` (default: ``volume`` where it works)
``AGENT_CLUSTER_SANDBOX_TMP_MB``            size of the sandbox's private ``/tmp`` (256)
``AGENT_CLUSTER_SANDBOX_UID_BASE``          when the worker runs as root, each session's
                                            processes run as host uid ``base + hash(session)
                                            % 65536`` (1900000000)
==========================================  ====================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from cluster.errors import ConfigError

HOME_ENV_VAR = "AGENT_CLUSTER_HOME"
BACKEND_ENV_VAR = "AGENT_CLUSTER_SANDBOX"
_PREFIX = "AGENT_CLUSTER_SANDBOX_"
_MIB = 1024 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Backend = Literal["bwrap", "local", "auto"]
Network = Literal["none", "host"]
WorkspaceFs = Literal["auto", "volume", "watch"]
BACKENDS: tuple[Backend, ...] = ("bwrap", "local", "auto")
NETWORKS: tuple[Network, ...] = ("none", "host")
WORKSPACE_FS: tuple[WorkspaceFs, ...] = ("auto", "volume", "watch")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """Return ``$AGENT_CLUSTER_HOME``, else the per-user data directory ``.../agent-cluster``.

    Never a shared temporary directory: another local user could pre-create it.
    """
    env = os.environ if environ is None else environ
    configured = env.get(HOME_ENV_VAR)
    if configured:
        return Path(configured)
    data_home = env.get("XDG_DATA_HOME")
    if data_home and Path(data_home).is_absolute():
        return Path(data_home) / "agent-cluster"
    return Path(os.path.expanduser("~")) / ".local" / "share" / "agent-cluster"


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of every sandboxed process (``ulimit`` inside the sandbox).

    Attributes:
        cpu_seconds: CPU time per process (RLIMIT_CPU).
        memory_bytes: address space per process (RLIMIT_AS).
        file_bytes: largest file a process may write (RLIMIT_FSIZE).
        processes: processes of the sandbox's user (RLIMIT_NPROC).
        workspace_bytes: most the session's workspace may hold.
        tmp_bytes: size of the private ``/tmp`` (a tmpfs).
        workspace_files: most files (inodes) a workspace volume may hold.
    """

    cpu_seconds: int = 600
    memory_bytes: int = 4096 * _MIB
    file_bytes: int = 1024 * _MIB
    processes: int = 256
    workspace_bytes: int = 2048 * _MIB
    tmp_bytes: int = 256 * _MIB
    workspace_files: int = 100_000

    def __post_init__(self) -> None:
        for name in (
            "cpu_seconds",
            "memory_bytes",
            "file_bytes",
            "processes",
            "workspace_bytes",
            "tmp_bytes",
            "workspace_files",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"sandbox limit {name} must be a whole number > 0, got {value!r}")


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox settings of one host.

    Attributes:
        backend: ``bwrap``, ``local`` or ``auto`` (see the module docstring).
        network: ``none`` (own network namespace, loopback only) or ``host``.
        limits: per-process and per-workspace limits.
        pass_env: names of worker environment variables copied into the sandbox.
        uid_base: first host uid of the per-session uids used when the worker is root.
        workspace_fs: how the workspace quota is enforced (``auto``, ``volume``, ``watch``).
    """

    backend: Backend = "bwrap"
    network: Network = "none"
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    pass_env: tuple[str, ...] = ()
    uid_base: int = 1_900_000_000
    workspace_fs: WorkspaceFs = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"{BACKEND_ENV_VAR} must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.network not in NETWORKS:
            raise ConfigError(
                f"{_PREFIX}NETWORK (sandbox.network) must be one of {', '.join(NETWORKS)}, "
                f"got {self.network!r}"
            )
        if self.workspace_fs not in WORKSPACE_FS:
            raise ConfigError(
                f"{_PREFIX}WORKSPACE_FS must be one of {', '.join(WORKSPACE_FS)}, "
                f"got {self.workspace_fs!r}"
            )
        for name in self.pass_env:
            if not _ENV_NAME.match(name):
                raise ConfigError(f"{_PREFIX}ENV: {name!r} is not a variable name")
        if not 1000 <= self.uid_base <= 2**32 - 2**16 - 2:
            raise ConfigError(
                f"{_PREFIX}UID_BASE must be in [1000, 4294901758], got {self.uid_base}"
            )

    def for_shared_workspaces(self) -> SandboxConfig:
        """This config for workspaces on storage every worker mounts (``workspace_mode: shared``).

        Never volumes there: two hosts mounting one ext4 image at once would corrupt it.

        Raises:
            ConfigError: ``AGENT_CLUSTER_SANDBOX_WORKSPACE_FS=volume`` was asked for.
        """
        if self.workspace_fs == "volume":
            raise ConfigError(
                f"{_PREFIX}WORKSPACE_FS=volume cannot be used with workspace_mode shared "
                "(two hosts would mount one image at once); set it to auto or watch"
            )
        return replace(self, workspace_fs="watch")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """Build the config from ``AGENT_CLUSTER_SANDBOX*`` variables.

        Raises:
            ConfigError: a variable holds a bad value (the message names it).
        """
        env = os.environ if environ is None else environ
        limits = SandboxLimits(
            cpu_seconds=_int(env, "CPU_SECONDS", SandboxLimits.cpu_seconds),
            memory_bytes=_int(env, "MEMORY_MB", SandboxLimits.memory_bytes // _MIB) * _MIB,
            file_bytes=_int(env, "FILE_MB", SandboxLimits.file_bytes // _MIB) * _MIB,
            processes=_int(env, "PROCESSES", SandboxLimits.processes),
            workspace_bytes=_int(env, "WORKSPACE_MB", SandboxLimits.workspace_bytes // _MIB) * _MIB,
            tmp_bytes=_int(env, "TMP_MB", SandboxLimits.tmp_bytes // _MIB) * _MIB,
            workspace_files=_int(env, "WORKSPACE_FILES", SandboxLimits.workspace_files),
        )
        backend = env.get(BACKEND_ENV_VAR, "").strip() or "bwrap"
        network = env.get(_PREFIX + "NETWORK", "").strip() or "none"
        pass_env = tuple(
            name.strip() for name in env.get(_PREFIX + "ENV", "").split(",") if name.strip()
        )
        return cls(
            backend=backend,  # type: ignore[arg-type]  # checked in __post_init__
            network=network,  # type: ignore[arg-type]
            limits=limits,
            pass_env=pass_env,
            uid_base=_int(env, "UID_BASE", 1_900_000_000),
            workspace_fs=env.get(_PREFIX + "WORKSPACE_FS", "").strip() or "auto",  # type: ignore[arg-type]
        )


def _int(env: Mapping[str, str], suffix: str, default: int) -> int:
    raw = env.get(_PREFIX + suffix)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{_PREFIX}{suffix} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{_PREFIX}{suffix} must be > 0, got {value}")
    return value


__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "HOME_ENV_VAR",
    "NETWORKS",
    "Backend",
    "Network",
    "SandboxConfig",
    "SandboxLimits",
    "WORKSPACE_FS",
    "WorkspaceFs",
    "default_home",
]
