"""The worker process: heartbeat, event listener, turn executor, idle sweeper.

``agent-cluster worker --redis-url URL`` runs one :class:`WorkerProcess`. It
registers in the membership set, heartbeats, claims turn jobs from its own rq
queue and runs them in-process (many at once, one at a time per session),
sharing one agent cache. Config and registry events bust stale agents eagerly;
every turn also checks the versions its lease reports. SIGTERM stops claiming,
lets running turns finish (bounded by the drain timeout), soft-releases the
cached agents, deregisters and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry, default_registry
from cluster.connection import blocking_client, connect
from cluster.events import EventBus, Subscriber
from cluster.keys import Keyspace
from cluster.leases import RedisLeaseStore
from cluster.membership import RedisMembership, WorkerState
from cluster.session_store import RedisSessionStore
from cluster.settings import ClusterSettings
from cluster.transport import ReplyChannel, TurnQueue
from cluster.versions import RedisVersionStore
from worker.cache import AgentCache
from worker.executor import ClaimLoop, TurnExecutor
from worker.turns import ConfigView, LeaseKeeper, TurnRunner, TurnServices

log = logging.getLogger("worker.process")


@dataclass
class WorkerOptions:
    """Per-process options (the cluster-wide ones are in ClusterSettings)."""

    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    concurrency: int = 32
    cache_size: int = 128
    idle_ttl: float = 3600.0
    sweep_interval: float = 60.0
    sandbox_root: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class WorkerProcess:
    """One worker: owns its threads; :meth:`start` returns, :meth:`stop` drains."""

    def __init__(
        self,
        *,
        settings: ClusterSettings,
        options: WorkerOptions | None = None,
        client: redis.Redis | None = None,
        blocking: redis.Redis | None = None,
        tool_registry: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or WorkerOptions()
        self.worker_id = Keyspace.check_worker_id(self.options.worker_id)
        self.keyspace = Keyspace(settings.namespace)
        self.client = client if client is not None else connect(settings.redis_url)
        self.blocking = (
            blocking
            if blocking is not None
            else blocking_client(settings.redis_url, block_seconds=1.0)
        )
        self.membership = RedisMembership(
            self.client, self.keyspace, heartbeat_ttl=settings.heartbeat_ttl
        )
        self.queue = TurnQueue(
            self.blocking,
            self.keyspace,
            job_timeout=settings.turn_timeout,
            result_ttl=settings.reply_ttl,
        )
        self.events = EventBus(self.client, self.keyspace)
        self.cache: AgentCache[AIAgent] = AgentCache(
            max_size=self.options.cache_size,
            idle_ttl=self.options.idle_ttl,
            sweep_interval=self.options.sweep_interval,
        )
        leases = RedisLeaseStore(self.client, self.keyspace)
        self.config = ConfigView(
            RedisVersionStore(
                self.client, self.keyspace, max_config_bytes=settings.max_config_bytes
            )
        )
        self.lease_keeper = LeaseKeeper(leases, ttl=settings.lease_ttl)
        tool_env = ToolEnvironment.default(self.options.sandbox_root)
        self.runner = TurnRunner(
            TurnServices(
                worker_id=self.worker_id,
                client=self.client,
                keyspace=self.keyspace,
                leases=leases,
                sessions=RedisSessionStore(
                    self.client, self.keyspace, processed_retention=settings.processed_retention
                ),
                replies=ReplyChannel(self.client, self.keyspace, reply_ttl=settings.reply_ttl),
                cache=self.cache,
                config=self.config,
                lease_keeper=self.lease_keeper,
                tool_env=tool_env,
                tool_registry=tool_registry or default_registry(),
                lease_ttl=settings.lease_ttl,
                turn_timeout=settings.turn_timeout,
                environ=self.options.environ,
            )
        )
        self.executor = TurnExecutor(
            handler=self.runner.run,
            concurrency=self.options.concurrency,
            name=f"turns-{self.worker_id}",
        )
        self.claims = ClaimLoop(queue=self.queue, worker_id=self.worker_id, executor=self.executor)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True
        )
        self._subscriber: Subscriber | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Register, then start heartbeat, events, lease keeper, sweeper and claiming."""
        self.config.refresh()
        self.membership.register(
            self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queue=self.keyspace.worker_queue(self.worker_id),
        )
        self._heartbeat.start()
        self._subscriber = self.events.subscribe(self._on_event, on_reconnect=self._on_reconnect)
        self.lease_keeper.start()
        self.cache.start_sweeper()
        self.claims.start()
        log.info(
            "worker %s started (concurrency %d, namespace %s, redis %s)",
            self.worker_id,
            self.options.concurrency,
            self.settings.namespace,
            self.settings.redacted_url(),
        )

    def stop(self, *, timeout: float | None = None) -> bool:
        """Drain: stop claiming, finish running turns, release agents, deregister.

        Returns:
            True if every running turn finished within the timeout.
        """
        timeout = self.settings.drain_timeout if timeout is None else timeout
        self.membership.set_state(self.worker_id, WorkerState.DRAINING)
        self.claims.stop()
        finished = self.executor.wait_idle(timeout)
        self.executor.shutdown(wait=finished)
        self._stop.set()
        self.lease_keeper.stop()
        if self._subscriber is not None:
            self._subscriber.stop(timeout=2.0)
        self.cache.shutdown(hard=False)
        self.membership.deregister(self.worker_id)
        self._heartbeat.join(timeout=5)
        log.info(
            "worker %s stopped (%s)",
            self.worker_id,
            "all turns finished" if finished else "drain timeout: turns were cut off",
        )
        return finished

    def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT, drain; the exit code is 0 after a clean drain."""
        stop_requested = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop_requested.set())
        self.start()
        stop_requested.wait()
        return 0 if self.stop() else 1

    # -- background duties --------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            try:
                if self.membership.heartbeat(self.worker_id) is None:
                    log.warning("worker %s was pruned as dead; registering again", self.worker_id)
                    self.membership.register(
                        self.worker_id,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        queue=self.keyspace.worker_queue(self.worker_id),
                    )
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("config", "registry"):
            self._on_reconnect()

    def _on_reconnect(self) -> None:
        # Eager bust; the turn-start check is what guarantees freshness.
        if self.config.refresh():
            busted = self.cache.clear()
            log.info(
                "config changed (version %d, registry %d): released %d cached agents",
                self.config.config_version,
                self.config.registry_generation,
                busted,
            )

    def status(self) -> dict[str, Any]:
        """What this worker is doing, for the status endpoint and tests."""
        return {
            "worker_id": self.worker_id,
            "in_flight": self.executor.in_flight(),
            "cache": self.cache.metrics(),
            "config_version": self.config.config_version,
        }
