"""Fixtures of the agent integration tests: the provider simulator and a tool environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.simulator import ProviderSimulator
from agent.tools import FileToolStateStore, ToolEnvironment


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture
def tool_env(tmp_path: Path) -> ToolEnvironment:
    return ToolEnvironment(
        sandbox_root=tmp_path / "sandboxes", state=FileToolStateStore(tmp_path / "state")
    )
