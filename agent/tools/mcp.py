"""MCP servers as tools: :class:`MCPManager` connects over stdio and registers their tools.

The official SDK is asynchronous and the tool registry is not, so the manager
runs one asyncio event loop in a daemon thread (:class:`LoopThread`) that
hosts every :class:`MCPConnection`; the synchronous tool handlers submit
calls to it with ``asyncio.run_coroutine_threadsafe`` and wait with a timeout.

Tools of server ``files`` are registered in toolset ``mcp-files`` as
``mcp_files_<tool>`` (so two servers may both have an ``echo``), with the
server's own input schema. :meth:`MCPManager.reload` re-lists every server's
tools and registers/deregisters the difference, which bumps the registry
generation and so busts cached agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from agent.tools.loop_thread import LoopThread
from agent.tools.mcp_config import MCPServerConfig, parse_mcp_servers
from agent.tools.mcp_connection import STOP_TIMEOUT, MCPConnection
from agent.tools.registry import ToolContext, ToolRegistry, ToolSpec
from cluster.errors import ConfigError, ToolError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_CONNECTION_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED, without importing the SDK early


def _root_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _registered_name(server: str, tool: str, taken: set[str]) -> str:
    """``mcp_<server>_<tool>``, made provider-safe (``[A-Za-z0-9_-]{1,64}``) and unique."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", f"mcp_{server}_{tool}")
    if len(name) > 64 or name in taken:
        digest = hashlib.sha256(tool.encode("utf-8")).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def _result_text(result: Any) -> str:
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        if text is None:
            text = getattr(getattr(block, "resource", None), "text", None)
        parts.append(text if isinstance(text, str) else f"[{block.type} content omitted]")
    if not parts and result.structured_content is not None:
        parts.append(repr(result.structured_content))
    return "\n".join(parts)


class MCPManager:
    """Connects to MCP servers and keeps their tools registered in a :class:`ToolRegistry`.

    Args:
        registry: where the servers' tools are registered.
        servers: the servers to connect to (see :func:`parse_mcp_servers`).
        call_timeout: seconds a tool call (and a tool listing) may take.
        start_timeout: seconds a server may take to start and finish the handshake.

    Raises:
        ConfigError: two servers share a name.
    """

    def __init__(
        self,
        *,
        registry: ToolRegistry,
        servers: Sequence[MCPServerConfig],
        call_timeout: float = 30.0,
        start_timeout: float = 30.0,
    ) -> None:
        names = [server.name for server in servers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"mcp_servers: server names must be unique, got {duplicates} twice")
        self._registry = registry
        self._servers = list(servers)
        self._call_timeout = call_timeout
        self._start_timeout = start_timeout
        self._lock = threading.RLock()
        self._runner: LoopThread | None = None
        self._connections: dict[str, MCPConnection] = {}
        self._specs: dict[str, dict[str, ToolSpec]] = {server.name: {} for server in servers}
        self._closed = False

    def start(self) -> None:
        """Connect to every server (in parallel) and register its tools.

        Servers that start are kept even when others fail; call :meth:`close`
        in any case.

        Raises:
            ToolError: one or more servers failed to start or list their tools
                (the message names each server and its command).
        """
        with self._lock:
            if self._closed:
                raise ToolError("this MCPManager is closed; create a new one")
            if self._runner is None:
                self._runner = LoopThread("mcp-event-loop")
            failures = self._refresh_all()
        self._raise_failures(failures)

    def reload(self) -> None:
        """Re-discover every server's tools: register new or changed ones, drop vanished ones.

        Each change bumps the registry generation; an unchanged server changes
        nothing. Servers that are not connected (failed to start, or exited)
        are started again.

        Raises:
            ToolError: a server could not be reached (the others are still reloaded).
        """
        with self._lock:
            if self._closed or self._runner is None:
                raise ToolError("call start() before reload() (and not after close())")
            failures = self._refresh_all()
        self._raise_failures(failures)

    def close(self) -> None:
        """Deregister the tools, stop every server and the event loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for specs in self._specs.values():
                for name in specs:
                    self._registry.deregister(name)
                specs.clear()
            for conn in self._connections.values():
                with contextlib.suppress(ToolError):
                    self._submit(conn.close(), STOP_TIMEOUT + 5, f"stopping {conn.describe()}")
                conn.close_log()
            if self._runner is not None:
                self._runner.stop(timeout=STOP_TIMEOUT)

    def __enter__(self) -> MCPManager:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def tool_names(self, server: str) -> list[str]:
        """Return the registered names of ``server``'s tools, sorted."""
        with self._lock:
            return sorted(self._specs.get(server, {}))

    def call(self, server: str, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool`` on ``server`` and return its text result.

        Raises:
            ToolError: the server is not connected, the call timed out or
                failed, or the tool reported an error.
        """
        from mcp.shared.exceptions import MCPError

        conn = self._connections.get(server)
        if conn is None or self._closed:
            raise ToolError(f"MCP server {server!r} is not connected; reload the MCP servers")
        try:
            result = self._submit(
                conn.call_tool(tool, arguments, self._call_timeout),
                self._call_timeout,
                f"the call to {tool!r} on MCP server {server!r}",
            )
        except MCPError as exc:
            hint = (
                " (the server has probably exited; reloading the MCP servers restarts it)"
                if exc.code == _CONNECTION_CLOSED
                else ""
            )
            raise ToolError(
                f"the call to {tool!r} on MCP server {server!r} failed: {exc.message}{hint}"
            ) from exc
        except ToolError:
            raise
        except Exception as exc:
            cause = _root_cause(exc)
            raise ToolError(
                f"calling {tool!r} on MCP server {server!r} failed: {type(cause).__name__}: {cause}"
            ) from exc
        text = _result_text(result)
        if result.is_error:
            raise ToolError(text or f"MCP tool {tool!r} reported an error without details")
        return text

    def _submit(self, coro: Coroutine[Any, Any, _T], timeout: float, what: str) -> _T:
        if self._runner is None:
            coro.close()
            raise ToolError("the MCPManager is not started; call start() first")
        return self._runner.submit(coro, timeout, what)

    def _refresh_all(self) -> list[str]:
        """Connect where needed and re-list every server (all at once); return failure messages."""
        conns = []
        for config in self._servers:
            if config.name not in self._connections:
                self._connections[config.name] = MCPConnection(config)
            conns.append(self._connections[config.name])
        budget = self._start_timeout + STOP_TIMEOUT + 2 * self._call_timeout
        outcomes = self._submit(
            self._discover_all(conns), budget, "starting and listing the MCP servers"
        )
        failures = []
        for conn, outcome in zip(conns, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures.append(self._failure_message(conn, outcome))
            else:
                self._sync(conn.config.name, outcome)
        return failures

    @staticmethod
    def _failure_message(conn: MCPConnection, exc: BaseException) -> str:
        cause = _root_cause(exc)
        if isinstance(cause, FileNotFoundError):
            reason = "command not found"
        elif isinstance(cause, TimeoutError):
            reason = f"timed out ({cause})" if str(cause) else "timed out"
        else:
            reason = f"{type(cause).__name__}: {cause}"
        stderr = conn.stderr_tail()
        detail = f"\n  server stderr: {stderr}" if stderr else ""
        return (
            f"{conn.describe()} failed to start or list its tools: {reason}{detail}\n"
            f"  check mcp_servers.{conn.config.name} (command, args, env) in the config"
        )

    async def _discover_all(self, conns: list[MCPConnection]) -> list[list[Any] | BaseException]:
        return await asyncio.gather(
            *(self._discover(conn) for conn in conns), return_exceptions=True
        )

    async def _discover(self, conn: MCPConnection) -> list[Any]:
        if conn.connected:
            try:
                return await asyncio.wait_for(conn.list_tools(), self._call_timeout)
            except Exception as exc:
                # The server may have exited since the last listing: restart it once.
                logger.warning(
                    "%s did not list its tools (%s); restarting it", conn.describe(), exc
                )
        await conn.close()
        await conn.open(self._start_timeout)
        return await asyncio.wait_for(conn.list_tools(), self._call_timeout)

    def _make_spec(self, server: str, name: str, tool: Any) -> ToolSpec:
        remote = str(tool.name)
        parameters = dict(tool.input_schema or {})
        parameters.setdefault("type", "object")

        def handle(args: dict[str, Any], ctx: ToolContext) -> str:
            return self.call(server, remote, args)

        return ToolSpec(
            name=name,
            description=tool.description or f"{remote} (from MCP server {server})",
            parameters=parameters,
            toolset=f"mcp-{server}",
            handler=handle,
        )

    def _sync(self, server: str, tools: list[Any]) -> None:
        """Make the registry hold exactly ``tools`` for ``server``, touching only what changed."""
        current = self._specs[server]
        fresh: dict[str, ToolSpec] = {}
        for tool in sorted(tools, key=lambda t: str(t.name)):
            name = _registered_name(server, str(tool.name), set(fresh))
            fresh[name] = self._make_spec(server, name, tool)
        for name in sorted(set(current) - set(fresh)):
            self._registry.deregister(name)
            del current[name]
        for name, spec in fresh.items():
            old = current.get(name)
            if old is not None and (old.description, old.parameters) == (
                spec.description,
                spec.parameters,
            ):
                continue
            try:
                self._registry.register(spec)
            except ToolError as exc:
                logger.warning("MCP server %r: %s", server, exc)
                continue
            current[name] = spec

    @staticmethod
    def _raise_failures(failures: list[str]) -> None:
        if failures:
            raise ToolError("\n".join(failures))


__all__ = ["MCPManager", "MCPServerConfig", "parse_mcp_servers"]
