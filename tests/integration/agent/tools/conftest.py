"""Fixtures for the tool integration tests (real bash, real background processes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.tools import ToolContext, ToolEnvironment, ToolResult, default_registry
from tests.sandbox_support import require_bwrap

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


@pytest.fixture(params=["bwrap", "local"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each tool test runs in the bwrap sandbox and with the local backend.

    The choice goes through ``AGENT_CLUSTER_SANDBOX``, so environments built
    later (and other processes the test starts) use it too.
    """
    name = str(request.param)
    if name == "bwrap":
        require_bwrap()
    monkeypatch.setenv("AGENT_CLUSTER_SANDBOX", name)
    return name


def visible(env: ToolEnvironment, task_id: str = "task-1") -> Path:
    """The task's workspace as its commands see it (``/workspace`` in a bwrap sandbox)."""
    return env.sandbox().visible_workspace(env.sandbox_path(task_id))


@pytest.fixture
def env(home: Path, backend: str) -> Iterator[ToolEnvironment]:
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
