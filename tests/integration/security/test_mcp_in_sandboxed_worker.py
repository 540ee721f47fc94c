"""MCP tools keep working next to the bwrap sandbox, and their output is redacted too.

MCP servers are the operator's own programs (they run outside the sandbox, as
the worker's user); what they return still passes through the registry's
redaction, so a server that echoes a secret does not hand it to the model.
A secret reaches a server only by reference (``"${NAME}"`` in its env).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tools import (
    MCPManager,
    MCPServerConfig,
    ToolContext,
    ToolEnvironment,
    ToolRegistry,
    default_registry,
)
from agent.tools.sandbox_config import SandboxConfig
from tests.sandbox_support import require_bwrap

pytestmark = pytest.mark.integration

SERVER_SCRIPT = Path(__file__).parents[1] / "agent" / "tools" / "mcp_server.py"
SECRET = "mcp-secret-0123456789abcdef"


@pytest.fixture
def tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ToolRegistry, ToolContext]]:
    require_bwrap()
    monkeypatch.setenv("SERVICE_API_TOKEN", SECRET)
    registry = default_registry()
    manager = MCPManager(
        registry=registry,
        servers=[
            MCPServerConfig(
                name="test",
                command=sys.executable,
                args=(str(SERVER_SCRIPT),),
                env={
                    "MCP_TEST_TOOLS_FILE": str(tmp_path / "tools.json"),
                    "SERVICE_API_TOKEN": "${SERVICE_API_TOKEN}",
                },
            )
        ],
    )
    manager.start()
    env = ToolEnvironment.default(tmp_path / "home", sandbox=SandboxConfig(backend="bwrap"))
    yield registry, ToolContext("task-1", env)
    manager.close()
    env.teardown("task-1")


def test_mcp_tools_work_beside_sandboxed_terminal_commands(
    tools: tuple[ToolRegistry, ToolContext],
) -> None:
    registry, ctx = tools
    assert registry.dispatch("mcp_test_add", {"a": 2, "b": 40}, ctx).content == "42"
    terminal = registry.dispatch("terminal", {"command": 'pwd; echo "[$SERVICE_API_TOKEN]"'}, ctx)
    assert terminal.content.startswith("/workspace\n[]\n"), "the sandbox does not get the variable"


def test_a_secret_an_mcp_tool_returns_is_redacted(tools: tuple[ToolRegistry, ToolContext]) -> None:
    registry, ctx = tools
    echoed = registry.dispatch("mcp_test_echo", {"text": f"token is {SECRET}"}, ctx)
    assert not echoed.is_error
    assert SECRET not in echoed.content and "[redacted]" in echoed.content
