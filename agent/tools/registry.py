"""The tool registry: tool specs grouped in toolsets, neutral schemas and safe dispatch.

An agent asks the registry for the schemas of its toolsets (sorted by name,
so the prompt prefix stays byte-identical from turn to turn) and dispatches
the model's tool calls through it. Dispatch never raises for a tool's failure
or an unknown tool: the model gets an error result it can react to.
``generation`` counts every change to the set of tools, so a cached agent can
tell that its frozen schemas are stale.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.tools.arguments import validate_arguments
from agent.tools.environment import ToolEnvironment
from cluster.errors import LeaseLost, ToolError

logger = logging.getLogger(__name__)

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _never_stopped() -> str | None:
    return None


@dataclass(frozen=True)
class ToolContext:
    """What a tool call may know about its caller.

    Attributes:
        task_id: the session's task id; every piece of tool state is keyed by it.
        env: the sandbox root and state store to use.
        stopped: why the turn was stopped (a ``/stop``, an API interrupt, a
            newer message, a drain), or ``None`` while it runs; a tool that
            waits (``terminal``) polls it and kills what it started.
    """

    task_id: str
    env: ToolEnvironment
    stopped: Callable[[], str | None] = field(default=_never_stopped, compare=False)


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call, as sent back to the model.

    Attributes:
        content: the text the model sees.
        is_error: True when the call failed (bad arguments, unknown tool, tool error).
    """

    content: str
    is_error: bool = False


ToolHandler = Callable[[dict[str, Any], ToolContext], str]
"""A tool's implementation: validated arguments and context in, result text out.

Raise :class:`cluster.errors.ToolError` for a failure the model should read.
"""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, description, JSON-schema parameters, toolset and handler.

    Raises:
        ToolError: the name is not 1-64 characters of ``[A-Za-z0-9_-]`` (what
            the providers accept) or the parameters are not an object schema.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    toolset: str
    handler: ToolHandler

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name):
            raise ToolError(
                f"tool name {self.name!r} is invalid: use 1-64 letters, digits, '_' or '-'"
            )
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise ToolError(
                f"tool {self.name!r}: parameters must be a JSON schema with type 'object'"
            )

    def schema(self) -> dict[str, Any]:
        """Return the neutral schema ``{"name", "description", "parameters"}`` (a copy)."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
        }


class ToolRegistry:
    """A thread-safe set of tools; every register/deregister bumps ``generation``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, ToolSpec] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """How many times the set of tools has changed since the registry was created."""
        with self._lock:
            return self._generation

    def register(self, spec: ToolSpec) -> None:
        """Add ``spec``, replacing a tool of the same name in the same toolset.

        Raises:
            ToolError: a tool of that name already belongs to another toolset.
        """
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.toolset != spec.toolset:
                raise ToolError(
                    f"tool {spec.name!r} of toolset {spec.toolset!r} clashes with the tool of "
                    f"that name in toolset {existing.toolset!r}; rename one of them"
                )
            self._specs[spec.name] = spec
            self._generation += 1

    def deregister(self, name: str) -> bool:
        """Remove the tool ``name``; return False (and change nothing) if it is not registered."""
        with self._lock:
            if self._specs.pop(name, None) is None:
                return False
            self._generation += 1
            return True

    def get(self, name: str) -> ToolSpec | None:
        """Return the spec of ``name``, or None."""
        with self._lock:
            return self._specs.get(name)

    def toolsets(self) -> set[str]:
        """Return the names of the toolsets that have at least one tool."""
        with self._lock:
            return {spec.toolset for spec in self._specs.values()}

    def specs(self, toolsets: Iterable[str] | None = None) -> list[ToolSpec]:
        """Return the specs of the given toolsets (``None``: all), sorted by name."""
        wanted = None if toolsets is None else set(toolsets)
        with self._lock:
            chosen = [
                spec for spec in self._specs.values() if wanted is None or spec.toolset in wanted
            ]
        return sorted(chosen, key=lambda spec: spec.name)

    def schemas(self, toolsets: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Return neutral schemas of the given toolsets (``None``: all), sorted by name."""
        return [spec.schema() for spec in self.specs(toolsets)]

    def dispatch(
        self,
        name: str,
        args: Any,
        ctx: ToolContext,
        *,
        toolsets: Iterable[str] | None = None,
    ) -> ToolResult:
        """Run one tool call and return its result; never raises for a tool's failure.

        Unknown tools (or tools outside ``toolsets`` when given), invalid
        arguments, a ``ToolError`` and any other exception inside the handler
        all become an error result with a clear message. Secrets of the
        worker's environment are redacted from every result (see
        :meth:`ToolEnvironment.redact`).

        Raises:
            LeaseLost: the turn lost its lease while the tool saved state; the
                turn must stop, so this is not turned into a tool result.
        """
        result = self._dispatch(name, args, ctx, toolsets=toolsets)
        return ToolResult(ctx.env.redact(result.content), result.is_error)

    def _dispatch(
        self,
        name: str,
        args: Any,
        ctx: ToolContext,
        *,
        toolsets: Iterable[str] | None = None,
    ) -> ToolResult:
        """The body of :meth:`dispatch`, before redaction."""
        spec = self.get(name)
        if spec is None or (toolsets is not None and spec.toolset not in set(toolsets)):
            available = ", ".join(s.name for s in self.specs(toolsets)) or "none"
            return ToolResult(f"unknown tool {name!r}; available tools: {available}", True)
        try:
            arguments = validate_arguments(args, spec.parameters)
        except ToolError as exc:
            return ToolResult(f"invalid arguments for tool {name!r}: {exc}", True)
        try:
            content = spec.handler(arguments, ctx)
        except LeaseLost:
            raise
        except ToolError as exc:
            return ToolResult(f"{name} failed: {exc}", True)
        except Exception as exc:
            logger.warning("tool %r raised for task %r", name, ctx.task_id, exc_info=True)
            return ToolResult(
                f"{name} failed with an internal error: {type(exc).__name__}: {exc}", True
            )
        return ToolResult(content if isinstance(content, str) else str(content))


__all__ = ["ToolContext", "ToolHandler", "ToolRegistry", "ToolResult", "ToolSpec"]
