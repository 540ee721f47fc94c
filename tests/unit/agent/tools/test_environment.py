"""ToolEnvironment: where sandboxes and state live, and what teardown removes."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from agent.tools import FileToolStateStore, InMemoryToolStateStore, ToolEnvironment
from agent.tools.environment import HOME_ENV_VAR, default_home
from agent.tools.sandbox import Sandbox, resolve_sandbox
from cluster.errors import ToolError


def test_default_lives_under_agent_cluster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
    env = ToolEnvironment.default()
    assert env.sandbox_root == tmp_path / "sandboxes"
    assert isinstance(env.state, FileToolStateStore) and env.state.root == tmp_path / "tool-state"


def test_default_home_is_the_per_user_data_directory_not_a_shared_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HOME_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert (
        ToolEnvironment.default().sandbox_root == tmp_path / "data" / "agent-cluster" / "sandboxes"
    )
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    home = default_home()
    assert home == tmp_path / "me" / ".local" / "share" / "agent-cluster"
    assert not str(home).startswith(tempfile.gettempdir() + "/agent-cluster")


def test_directories_are_private_to_the_worker(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path / "home")
    env.sandbox_dir("t")
    env.control_dir("t")
    env.state.save("t", "k", 1)
    for path in (
        tmp_path / "home",
        env.sandbox_root,
        env.sandbox_path("t"),
        env.control_path("t"),
        tmp_path / "home" / "tool-state",
    ):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, path
        resolved = resolve_sandbox(env.sandbox_config)
        session_uid = (
            resolved.workspace_owner(path)
            if isinstance(resolved, Sandbox) and path == env.sandbox_path("t")
            else None
        )
        assert info.st_uid == (session_uid if session_uid is not None else os.geteuid())


def test_a_planted_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path / "home")
    env.sandbox_dir("someone")  # creates the root
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    env.sandbox_path("victim").symlink_to(elsewhere)
    with pytest.raises(ToolError, match="not a plain directory"):
        env.sandbox_dir("victim")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to create a directory owned by another user"
)
def test_a_directory_pre_created_by_another_user_is_refused(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path / "home")
    env.sandbox_dir("someone")
    planted = env.sandbox_path("victim")
    planted.mkdir()
    os.chown(planted, 12345, 12345)
    with pytest.raises(ToolError, match="owned by uid 12345"):
        env.sandbox_dir("victim")


def test_session_directory_names_carry_128_bits_of_the_id(tmp_path: Path) -> None:
    env = ToolEnvironment.default(tmp_path)
    names = {env.sandbox_path(task).name for task in ("a/b", "a_b", "a?b", "A/b")}
    assert len(names) == 4
    assert all(len(name.rsplit("-", 1)[1]) == 32 for name in names)


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
