"""What a worker does with the cluster's events: config pushes, registry bumps, interrupts,
steers and drain requests.

:class:`WorkerEvents` is the event bus subscriber of one worker process
(:class:`worker.process.WorkerProcess`). Config and registry events bust
stale agents eagerly (every turn also checks the versions its lease
reports); an interrupt or a steer aimed at a turn running here reaches it; a
drain request aimed at this worker is handed to the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent import AIAgent
from cluster.versions import RedisVersionStore
from worker.cache import AgentCache
from worker.config_view import ConfigView
from worker.mcp_tools import WorkerMCP
from worker.turns import TurnRunner

log = logging.getLogger("worker.process")


class WorkerEvents:
    """Applies the cluster's events to one worker's agents, tools and running turns."""

    def __init__(
        self,
        *,
        worker_id: str,
        runner: TurnRunner,
        config: ConfigView,
        versions: RedisVersionStore,
        cache: AgentCache[AIAgent],
        mcp: WorkerMCP,
        on_drain: Callable[[float | None], None],
    ) -> None:
        self._worker_id = worker_id
        self._runner = runner
        self._config = config
        self._versions = versions
        self._cache = cache
        self._mcp = mcp
        self._on_drain = on_drain

    def on_event(self, event: dict[str, Any]) -> None:
        """One event from the bus (events aimed at other workers are ignored)."""
        kind = event.get("type")
        if kind in ("config", "registry"):
            self._on_tools_event(event)
        elif kind == "interrupt" and event.get("worker") == self._worker_id:
            session, token = event.get("session"), event.get("token")
            if isinstance(session, str) and isinstance(token, int):
                self._runner.interrupt_turn(session, token, str(event.get("mode", "interrupt")))
        elif kind == "steer" and event.get("worker") == self._worker_id:
            session, token = event.get("session"), event.get("token")
            if isinstance(session, str) and isinstance(token, int):
                self._runner.steer_arrived(session, token)
        elif kind == "drain" and event.get("worker") == self._worker_id:
            self._on_drain(_drain_timeout(event.get("timeout")))

    def on_reconnect(self) -> None:
        """The bus (re)connected: a push may have gone unheard, apply the current versions."""
        self.apply_versions()

    def apply_versions(
        self, config_version: int | None = None, registry_generation: int | None = None
    ) -> None:
        """Apply the given (or current) versions; eager bust (the turn-start check is what
        guarantees freshness)."""
        if self._config.refresh(config_version, registry_generation):
            busted = self._cache.clear()
            log.info(
                "config changed (version %d, registry %d): released %d cached agents",
                self._config.config_version,
                self._config.registry_generation,
                busted,
            )

    def _on_tools_event(self, event: dict[str, Any]) -> None:
        """A config push or registry bump: follow ``mcp_servers``, re-discover tools, bust.

        On a registry bump (``agent-cluster mcp reload``) every MCP server's
        tools are re-discovered; a config push restarts the servers only if
        their section changed. When the tools changed, agents built meanwhile
        (a turn that started between the bump and the end of the re-discovery
        rebuilt with the old list) are dropped too. The worker then records
        the generation it has in Redis, which ``mcp reload`` waits for.
        """
        reload = event.get("type") == "registry"
        tools_changed = self._mcp.apply(self._versions.current_config()[1], reload=reload)
        self.on_reconnect()
        if tools_changed:
            self._cache.clear()
        generation = event.get("generation")
        if reload and isinstance(generation, int):
            self._versions.ack_registry(self._worker_id, generation)


def _drain_timeout(value: object) -> float | None:
    """The drain event's timeout in seconds, ``None`` when it gives none (or a bad one)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
