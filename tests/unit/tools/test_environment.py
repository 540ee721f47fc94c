"""ToolEnvironment: where sandboxes and state live, and what teardown removes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from agent.tools import FileToolStateStore, InMemoryToolStateStore, ToolEnvironment
from agent.tools.environment import HOME_ENV_VAR


def test_default_lives_under_agent_cluster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
    env = ToolEnvironment.default()
    assert env.sandbox_root == tmp_path / "sandboxes"
    assert isinstance(env.state, FileToolStateStore) and env.state.root == tmp_path / "tool-state"


def test_default_falls_back_to_a_per_user_temp_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOME_ENV_VAR, raising=False)
    expected = Path(tempfile.gettempdir()) / f"agent-cluster-{os.getuid()}"
    assert ToolEnvironment.default().sandbox_root == expected / "sandboxes"


def test_two_default_environments_share_everything_on_disk(tmp_path: Path) -> None:
    first, second = ToolEnvironment.default(tmp_path), ToolEnvironment.default(tmp_path)
    first.state.save("t", "k", 1)
    assert second.state.load("t", "k") == 1
    assert first.sandbox_dir("t") == second.sandbox_dir("t")


def test_sandbox_dirs_are_created_on_demand_and_path_safe(tmp_path: Path) -> None:
    env = ToolEnvironment(sandbox_root=tmp_path, state=InMemoryToolStateStore())
    assert not env.sandbox_path("../escape").exists()
    sandbox = env.sandbox_dir("../escape")
    assert sandbox.is_dir() and sandbox.parent == tmp_path
    assert env.sandbox_dir("a/b") != env.sandbox_dir("a_b")


def test_teardown_removes_only_that_tasks_sandbox_and_state(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path)
    for task in ("mine", "theirs"):
        (env.sandbox_dir(task) / "file.txt").write_text(task)
        env.state.save(task, "todo", [task])
    env.teardown("mine")
    assert not env.sandbox_path("mine").exists() and env.state.load("mine", "todo") is None
    assert (env.sandbox_dir("theirs") / "file.txt").read_text() == "theirs"
    assert env.state.load("theirs", "todo") == ["theirs"]
    env.teardown("mine")  # idempotent
    env.teardown("never-used")
