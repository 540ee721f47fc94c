"""A tiny MCP server the MCP integration tests start over stdio.

Tools listed by default: ``add(a, b)`` and ``echo(text)``; also available:
``shout(text)``, ``fail(reason)`` and ``crash()`` (exits the process). If
``MCP_TEST_TOOLS_FILE`` names a file holding a JSON list of tool names, only
those tools are listed (read at every listing), which lets a test make
``shout`` appear or ``echo`` vanish and then reload.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

DEFAULT_TOOLS = ("add", "echo")


class ReloadableServer(MCPServer):
    """Lists only the tools enabled in ``MCP_TEST_TOOLS_FILE`` (default: add, echo)."""

    async def list_tools(self) -> list[Any]:
        tools = await super().list_tools()
        enabled: set[str] = set(DEFAULT_TOOLS)
        path = os.environ.get("MCP_TEST_TOOLS_FILE")
        if path and Path(path).exists():
            enabled = set(json.loads(Path(path).read_text()))
        return [tool for tool in tools if tool.name in enabled]


server = ReloadableServer("agent-cluster-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def shout(text: str) -> str:
    """Return the text in upper case."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fail with the given reason."""
    raise ValueError(reason)


@server.tool()
def crash() -> str:
    """Exit the server process at once (to test reconnecting)."""
    os._exit(1)


if __name__ == "__main__":
    server.run("stdio")
