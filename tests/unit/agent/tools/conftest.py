"""Fixtures for the tool unit tests: a tool environment under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools import InMemoryToolStateStore, ToolContext, ToolEnvironment


@pytest.fixture
def env(tmp_path: Path) -> ToolEnvironment:
    """A file-backed environment whose sandboxes and state live under tmp_path."""
    return ToolEnvironment.default(tmp_path / "home")


@pytest.fixture
def memory_env(tmp_path: Path) -> ToolEnvironment:
    """An environment with an in-memory state store."""
    return ToolEnvironment(sandbox_root=tmp_path / "sandboxes", state=InMemoryToolStateStore())


@pytest.fixture
def ctx(env: ToolEnvironment) -> ToolContext:
    return ToolContext(task_id="task-1", env=env)
