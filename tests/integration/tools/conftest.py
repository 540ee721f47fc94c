"""Fixtures for the tool integration tests (real bash, real background processes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.tools import ToolContext, ToolEnvironment, ToolResult, default_registry

TASK_IDS = ("task-1", "task-2")


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process on this host."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> Iterator[ToolEnvironment]:
    """A file-backed environment; the task ids tests use are torn down afterwards."""
    environment = ToolEnvironment.default(home)
    yield environment
    for task_id in TASK_IDS:
        environment.teardown(task_id)


Call = Callable[..., ToolResult]


@pytest.fixture
def call(env: ToolEnvironment) -> Call:
    """Dispatch a built-in tool through a brand-new registry and context (a fresh agent)."""

    def dispatch(tool: str, task_id: str = "task-1", **args: object) -> ToolResult:
        return default_registry().dispatch(tool, args, ToolContext(task_id, env))

    return dispatch
