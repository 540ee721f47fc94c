"""The built-in tool set and :func:`default_registry`.

Toolsets (each holds one tool of the same name): ``terminal``, ``process``,
``todo`` and ``memory``.
"""

from __future__ import annotations

from agent.tools.memory import memory_spec
from agent.tools.process import process_spec
from agent.tools.registry import ToolRegistry, ToolSpec
from agent.tools.terminal import DEFAULT_MAX_OUTPUT, DEFAULT_TIMEOUT, terminal_spec
from agent.tools.todo import todo_spec

BUILTIN_TOOLSETS = ("memory", "process", "terminal", "todo")


def builtin_specs(
    *, terminal_timeout: float = DEFAULT_TIMEOUT, terminal_max_output: int = DEFAULT_MAX_OUTPUT
) -> list[ToolSpec]:
    """Return fresh specs of the built-in tools, sorted by name."""
    return [
        memory_spec(),
        process_spec(),
        terminal_spec(default_timeout=terminal_timeout, max_output=terminal_max_output),
        todo_spec(),
    ]


def default_registry(
    *, terminal_timeout: float = DEFAULT_TIMEOUT, terminal_max_output: int = DEFAULT_MAX_OUTPUT
) -> ToolRegistry:
    """Return a new registry holding the built-in tools (a new object on every call).

    Args:
        terminal_timeout: default seconds a terminal command may run.
        terminal_max_output: bytes of terminal output shown to the model.
    """
    registry = ToolRegistry()
    for spec in builtin_specs(
        terminal_timeout=terminal_timeout, terminal_max_output=terminal_max_output
    ):
        registry.register(spec)
    return registry


__all__ = ["BUILTIN_TOOLSETS", "builtin_specs", "default_registry"]
