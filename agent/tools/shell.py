"""The persisted shell session of a task: working directory and environment.

Every ``terminal`` call runs a fresh ``bash``; what makes it feel like one
long-lived shell is this record, kept in the ``ToolStateStore`` under the key
``"terminal"``: the cwd after the last command and the environment variables
that differ from the base environment (set or unset). Background processes
start from the same cwd and environment.

The base environment is deliberately small (an allow-list of the worker's
variables such as ``PATH`` and ``HOME``, plus non-interactive defaults), so the
worker's secrets (API keys in its environment) never reach a model's shell,
and only the task's own changes are persisted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.tools.state import ToolStateStore

TERMINAL_STATE_KEY = "terminal"
SANDBOX_ENV_VAR = "AGENT_SANDBOX"
"""Set in every tool-started process: the task's sandbox path (also how teardown finds strays)."""

_PASSTHROUGH_VARS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
)
_NON_INTERACTIVE_DEFAULTS = {"TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat"}
# Variables bash maintains itself; persisting them would only add noise.
_SHELL_MANAGED_VARS = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def base_environment(sandbox: Path, isolated: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment every tool-started shell begins from.

    Args:
        sandbox: the workspace as the shell sees it.
        isolated: the sandbox's own base environment (``bwrap``); ``None`` for
            the ``local`` backend, which takes an allow-list of the worker's.
    """
    if isolated is not None:
        env = dict(isolated)
    else:
        env = {name: os.environ[name] for name in _PASSTHROUGH_VARS if name in os.environ}
        env.setdefault("PATH", os.defpath)
    env.update(_NON_INTERACTIVE_DEFAULTS)
    env[SANDBOX_ENV_VAR] = str(sandbox)
    return env


def parse_env_dump(data: bytes) -> dict[str, str]:
    """Parse the output of ``env -0`` into a dict (undecodable bytes are replaced)."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


@dataclass(frozen=True)
class ShellSession:
    """A task's shell state as persisted between commands.

    Attributes:
        cwd: working directory after the last command: absolute, or relative to
            the sandbox when inside it (so it survives a move to a host whose
            sandbox root differs); ``None`` means the sandbox itself.
        env_set: variables whose value differs from the base environment.
        env_unset: base-environment variables the task unset.
    """

    cwd: str | None = None
    env_set: dict[str, str] = field(default_factory=dict)
    env_unset: tuple[str, ...] = ()

    @classmethod
    def load(cls, store: ToolStateStore, task_id: str) -> ShellSession:
        """Read the task's shell session (an empty one if none is saved or it is malformed)."""
        raw: Any = store.load(task_id, TERMINAL_STATE_KEY)
        if not isinstance(raw, dict):
            return cls()
        cwd = raw.get("cwd")
        env_set = raw.get("env_set")
        env_unset = raw.get("env_unset")
        return cls(
            cwd=cwd if isinstance(cwd, str) else None,
            env_set={str(k): str(v) for k, v in env_set.items()}
            if isinstance(env_set, dict)
            else {},
            env_unset=tuple(str(name) for name in env_unset) if isinstance(env_unset, list) else (),
        )

    def save(self, store: ToolStateStore, task_id: str) -> None:
        """Persist this session for the task."""
        store.save(
            task_id,
            TERMINAL_STATE_KEY,
            {"cwd": self.cwd, "env_set": dict(self.env_set), "env_unset": list(self.env_unset)},
        )

    def working_dir(self, sandbox: Path) -> Path:
        """Return the saved cwd if it still exists on this host, else the sandbox."""
        if self.cwd:
            path = sandbox / self.cwd  # an absolute cwd replaces the sandbox prefix
            if path.is_dir():
                return path
        return sandbox

    def visible_cwd(self, sandbox: Path) -> str:
        """Return the saved cwd as a sandboxed command sees it (checked inside the sandbox)."""
        return str(sandbox / self.cwd) if self.cwd else str(sandbox)

    def environment(
        self, sandbox: Path, isolated: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Return the full environment for the next command (see :func:`base_environment`)."""
        env = base_environment(sandbox, isolated)
        for name in self.env_unset:
            env.pop(name, None)
        env.update(self.env_set)
        env[SANDBOX_ENV_VAR] = str(sandbox)
        return env

    @classmethod
    def captured(
        cls,
        sandbox: Path,
        cwd: str,
        final_env: Mapping[str, str],
        isolated: Mapping[str, str] | None = None,
    ) -> ShellSession:
        """Build the session to persist from what a command left behind."""
        base = base_environment(sandbox, isolated)
        env_set = {
            name: value
            for name, value in final_env.items()
            if name not in _SHELL_MANAGED_VARS and base.get(name) != value
        }
        env_set.pop(SANDBOX_ENV_VAR, None)
        env_unset = tuple(sorted(name for name in base if name not in final_env))
        stored_cwd: str | None = cwd or None
        roots = (sandbox,) if isolated is not None else (sandbox, sandbox.resolve())
        for root in roots:
            if stored_cwd is not None and Path(stored_cwd).is_relative_to(root):
                relative = Path(stored_cwd).relative_to(root)
                stored_cwd = None if relative == Path(".") else str(relative)
                break
        return cls(cwd=stored_cwd, env_set=env_set, env_unset=env_unset)


__all__ = [
    "SANDBOX_ENV_VAR",
    "TERMINAL_STATE_KEY",
    "ShellSession",
    "base_environment",
    "parse_env_dump",
]
