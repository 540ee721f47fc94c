"""Tools for the agent: registry, built-in tools, persisted per-task state and MCP servers.

Public API (see docs/architecture.md, "Tools"):

- state: :class:`ToolStateStore` (protocol), :class:`InMemoryToolStateStore`,
  :class:`FileToolStateStore`;
- :class:`ToolEnvironment` (sandbox root + state store; ``teardown`` is the hard end);
- registry: :class:`ToolRegistry`, :class:`ToolSpec`, :class:`ToolResult`,
  :class:`ToolContext`, :func:`default_registry`;
- :func:`memory_notes` for the system prompt;
- MCP: :class:`MCPServerConfig`, :func:`parse_mcp_servers`, :class:`MCPManager`.
"""

from __future__ import annotations

from agent.tools.builtins import BUILTIN_TOOLSETS, builtin_specs, default_registry
from agent.tools.environment import ToolEnvironment
from agent.tools.mcp import MCPManager
from agent.tools.mcp_config import MCPServerConfig, parse_mcp_servers
from agent.tools.memory import memory_notes
from agent.tools.registry import ToolContext, ToolHandler, ToolRegistry, ToolResult, ToolSpec
from agent.tools.state import FileToolStateStore, InMemoryToolStateStore, ToolStateStore

__all__ = [
    "BUILTIN_TOOLSETS",
    "FileToolStateStore",
    "InMemoryToolStateStore",
    "MCPManager",
    "MCPServerConfig",
    "ToolContext",
    "ToolEnvironment",
    "ToolHandler",
    "ToolRegistry",
    "ToolResult",
    "ToolSpec",
    "ToolStateStore",
    "builtin_specs",
    "default_registry",
    "memory_notes",
    "parse_mcp_servers",
]
