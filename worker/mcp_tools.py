"""The worker's MCP servers: started from the cluster config, re-discovered on a registry bump.

The config's ``mcp_servers`` section names stdio servers; every worker starts
them and registers their tools (toolset ``mcp-<name>``) in its tool registry.
A config push that changes the section restarts them; ``agent-cluster mcp
reload`` (a cluster-wide registry generation bump) makes each worker
re-discover the tools of the servers it runs. A server that fails to start is
logged and retried at the next reload; the worker keeps serving without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from agent.tools import MCPManager, ToolRegistry
from agent.tools.mcp_config import MCPServerConfig, parse_mcp_servers
from cluster.errors import ConfigError, ToolError

__all__ = ["WorkerMCP"]

log = logging.getLogger("worker.mcp")


class WorkerMCP:
    """Owns the worker's :class:`MCPManager` (at most one), following the config.

    Args:
        registry: The worker's tool registry, where MCP tools are registered.
        worker_id: For log lines.
        enabled: Whether servers named by the config may be started
            (``ClusterSettings.mcp_from_config``, from the worker's own
            settings, never from Redis: a server is a program run outside the
            sandbox).
    """

    def __init__(self, *, registry: ToolRegistry, worker_id: str, enabled: bool) -> None:
        self._registry = registry
        self._worker_id = worker_id
        self._enabled = enabled
        self._lock = threading.Lock()
        self._manager: MCPManager | None = None
        self._servers: list[MCPServerConfig] = []
        self.reloads = 0

    @property
    def servers(self) -> list[str]:
        """Names of the configured (enabled) servers."""
        return [server.name for server in self._servers]

    def apply(self, document: Mapping[str, Any] | None, *, reload: bool = False) -> bool:
        """Start, restart or stop servers to match ``document``; with ``reload``, re-discover.

        Never raises: a bad section or a failing server is logged (the config
        was validated when pushed, so that is an operator's server problem).

        Returns:
            Whether the registered tools changed (agents built before are stale).
        """
        before = self._registry.generation
        try:
            servers = parse_mcp_servers(document)
        except ConfigError as exc:
            log.error("worker %s: mcp_servers ignored: %s", self._worker_id, exc)
            return False
        if servers and not self._enabled:
            log.warning(
                "worker %s: not starting MCP servers %s from the cluster config: they would run "
                "programs outside the sandbox; set AGENT_CLUSTER_MCP_FROM_CONFIG=true on workers "
                "whose Redis writers are trusted",
                self._worker_id,
                ", ".join(server.name for server in servers),
            )
            servers = []
        with self._lock:
            if servers != self._servers:
                self._close_locked()
                self._servers = servers
                if servers:
                    self._manager = MCPManager(registry=self._registry, servers=servers)
                    self._run(self._manager.start, "start")
            elif reload and self._manager is not None:
                self._run(self._manager.reload, "reload")
            if reload:
                self.reloads += 1
        return self._registry.generation != before

    def _run(self, step: Any, what: str) -> None:
        try:
            step()
            log.info("worker %s: MCP %s done (%s)", self._worker_id, what, ", ".join(self.servers))
        except ToolError as exc:
            log.warning("worker %s: MCP %s: %s", self._worker_id, what, exc)

    def close(self) -> None:
        """Stop every server and deregister its tools. Idempotent."""
        with self._lock:
            self._close_locked()
            self._servers = []

    def _close_locked(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None
