"""Where a task's tools live: its sandbox directory and its persisted state.

A :class:`ToolEnvironment` is a small frozen value (a sandbox root and a
``ToolStateStore``) and holds no per-task state of its own: a brand-new agent
for the same task id, built from an equal environment, finds the task's files,
terminal session, background processes, todo list and memory notes again.
Only :meth:`ToolEnvironment.teardown` (an agent's hard ``close()``) removes
them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from agent.tools.background import kill_task_processes
from agent.tools.state import FileToolStateStore, ToolStateStore, safe_task_id

HOME_ENV_VAR = "AGENT_CLUSTER_HOME"


def default_home() -> Path:
    """Return ``$AGENT_CLUSTER_HOME`` or ``<tmp>/agent-cluster-<uid>``."""
    configured = os.environ.get(HOME_ENV_VAR)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"agent-cluster-{os.getuid()}"


@dataclass(frozen=True)
class ToolEnvironment:
    """The sandbox root and state store the tools of every task use.

    Attributes:
        sandbox_root: parent directory of the per-task sandbox directories.
        state: where tools persist per-task state (cwd, env, processes, todo, memory).
    """

    sandbox_root: Path
    state: ToolStateStore

    @classmethod
    def default(cls, home: Path | str | None = None) -> ToolEnvironment:
        """Build the file-backed environment of this host.

        Args:
            home: base directory; defaults to ``$AGENT_CLUSTER_HOME`` or
                ``<tmp>/agent-cluster-<uid>``. Sandboxes go to ``home/sandboxes``
                and tool state to ``home/tool-state``.
        """
        base = Path(home) if home is not None else default_home()
        return cls(
            sandbox_root=base / "sandboxes",
            state=FileToolStateStore(base / "tool-state"),
        )

    def with_state(self, store: ToolStateStore) -> ToolEnvironment:
        """Return a copy that persists tool state in ``store`` (e.g. the lease-fenced Redis one)."""
        return replace(self, state=store)

    def sandbox_path(self, task_id: str) -> Path:
        """Return the task's sandbox directory without creating it."""
        return Path(self.sandbox_root) / safe_task_id(task_id)

    def sandbox_dir(self, task_id: str) -> Path:
        """Return the task's sandbox directory, creating it on first use."""
        path = self.sandbox_path(task_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def teardown(self, task_id: str) -> None:
        """HARD end of a task: kill its background processes, delete its sandbox and state.

        Never touches another task's processes, files or state. Idempotent.
        """
        sandbox = self.sandbox_path(task_id)
        kill_task_processes(self.state, task_id, sandbox)
        for _attempt in range(3):  # a process dying just now may still have been writing
            shutil.rmtree(sandbox, ignore_errors=True)
            if not sandbox.exists():
                break
        self.state.delete_task(task_id)


__all__ = ["HOME_ENV_VAR", "ToolEnvironment", "default_home"]
