"""One MCP server over stdio: :class:`MCPConnection`, driven on the manager's event loop.

The SDK's context managers (``mcp.Client`` and the stdio transport, which owns
the server process) must be entered and left by the same task, so each
connection runs a long-lived task that holds the client open until asked to
stop; listing and calling tools are ordinary coroutines on the same loop.
The server's stderr goes to a temporary file, quoted when it fails to start.

The SDK is imported on first use: it is heavy, and most agents never start
an MCP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO, cast

from agent.tools.host_environment import host_environment
from agent.tools.mcp_config import MCPServerConfig
from cluster.errors import ToolError

if TYPE_CHECKING:
    from mcp import Client

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 15.0
"""Seconds to wait for a server to stop (the SDK's own shutdown is bounded by ~6 s)."""
_MAX_PAGES = 100


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env_references(env: Mapping[str, str]) -> dict[str, str]:
    """Replace ``${NAME}`` in MCP server variables with the worker's own ``NAME``.

    This is how a secret reaches an MCP server without being written into the
    cluster config (which refuses secrets): ``env: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}``.
    An unset variable expands to an empty string.
    """
    return {
        name: _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), ""), value)
        for name, value in env.items()
    }


class MCPConnection:
    """A connection to one MCP server; every coroutine must run on the same event loop.

    Args:
        config: how to start the server.
    """

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self._errlog = cast(TextIO, tempfile.TemporaryFile(mode="w+"))
        self._client: Client | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        """Return e.g. ``MCP server 'files' (command: python server.py)``."""
        command = shlex.join([self.config.command, *self.config.args])
        return f"MCP server {self.config.name!r} (command: {command})"

    @property
    def connected(self) -> bool:
        """True while the handshake is done and the holding task runs."""
        return self._client is not None and self._task is not None and not self._task.done()

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the server wrote to stderr (read without moving the shared offset)."""
        with contextlib.suppress(OSError, ValueError):
            fd = self._errlog.fileno()
            size = os.fstat(fd).st_size
            return os.pread(fd, limit, max(0, size - limit)).decode("utf-8", "replace").strip()
        return ""

    async def open(self, timeout: float) -> None:
        """Start the server and finish the handshake within ``timeout`` seconds.

        Raises:
            TimeoutError: no handshake in time (the server is stopped again).
            Exception: what the SDK raised (e.g. ``FileNotFoundError``).
        """
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp-{self.config.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            raise TimeoutError(f"no handshake within {timeout:g} s") from None
        finally:
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: the caller got it through wait_for

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        from mcp import Client, StdioServerParameters, stdio_client
        from mcp.client.stdio import get_default_environment

        assert self._stop is not None
        # The SDK's allow-list of the worker's own variables (HOME, PATH, USER...)
        # and the server's configured env: nothing of any session.
        declared = {**get_default_environment(), **expand_env_references(self.config.env or {})}
        params = StdioServerParameters(
            command=self.config.command,
            args=list(self.config.args),
            env=host_environment(declared),
        )
        try:
            # A transport rather than the bare parameters, so that stderr goes to our file.
            async with Client(stdio_client(params, errlog=self._errlog), cache=None) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.warning("%s disconnected: %s", self.describe(), exc)
        finally:
            self._client = None
            if not ready.done():
                ready.set_exception(ToolError("the connection was cancelled"))

    async def close(self) -> None:
        """Stop the server (politely, then by cancelling the holding task). Idempotent."""
        if self._stop is not None:
            self._stop.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def close_log(self) -> None:
        """Release the stderr file (after :meth:`close`)."""
        self._errlog.close()

    def _require_client(self) -> Client:
        if self._client is None:
            raise ToolError(f"{self.describe()} is not connected; reload the MCP servers")
        return self._client

    async def list_tools(self) -> list[Any]:
        """Return every tool the server lists now (all pages)."""
        client = self._require_client()
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        """Call tool ``name`` and return the SDK's ``CallToolResult``."""
        client = self._require_client()
        return await client.call_tool(name, arguments, read_timeout_seconds=timeout)


__all__ = ["STOP_TIMEOUT", "MCPConnection"]
