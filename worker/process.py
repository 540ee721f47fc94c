"""The worker process: heartbeat, recovery, event listener, turn executor, idle sweeper, drain.

``agent-cluster worker --redis-url URL`` runs one :class:`WorkerProcess`. It
registers in the membership set (its id unique among live workers), hands
its own orphaned in-flight ids back to its queue, heartbeats, claims turn
jobs from its own rq queue and runs them in-process (many at once, one at a
time per session), sharing one agent cache. When another worker's heartbeat
expires (each beat says when the next one may), it checks for dead workers
and, one recoverer at a time, hands their turns on
(:mod:`cluster.recovery`). Config and registry events bust stale agents
eagerly; every turn also checks the versions its lease reports. A worker that
finds it was declared dead (paused, cut off from Redis) drops its cached
agents and registers again; its old turns were handed on and its stale
leases can write nothing.

SIGTERM, or ``agent-cluster drain ID``, drains: the worker is marked draining
(routing stops placing turns on it, atomically), the workspaces of its idle
sessions are snapshotted to Redis for their next owners (``workspace_mode:
snapshot``), its queued and not-started turns move to their sessions' new
owners, running turns finish up to the
drain timeout (past it they are cut off and handed on too), cached agents
are soft-released, the worker deregisters and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from agent import AIAgent
from agent.tools import ToolEnvironment, ToolRegistry, default_registry
from cluster.connection import blocking_client, connect, count_round_trips
from cluster.errors import WorkerIdInUse
from cluster.event_log import ClusterEventLog
from cluster.events import EventBus, Subscriber
from cluster.keys import Keyspace
from cluster.membership import WorkerState
from cluster.memory_budget import parse_memory_budget
from cluster.redis_checks import check_eviction_policy
from cluster.schedules import ScheduleStore
from cluster.session_store import RedisSessionStore
from cluster.settings import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_IDLE_TTL,
    DEFAULT_SWEEP_INTERVAL,
    ClusterSettings,
)
from cluster.stores import ClusterStores, build_stores
from cluster.tool_state import RedisToolStateStore
from cluster.versions import RedisVersionStore
from cluster.workspace_store import RedisWorkspaceStore
from worker.background_notices import BackgroundNotices
from worker.cache import AgentCache
from worker.cluster_events import WorkerEvents
from worker.config_view import ConfigView
from worker.executor import ClaimLoop, TurnExecutor
from worker.health import HealthWriter, beat_with_health
from worker.heartbeat_loop import HeartbeatLoop
from worker.lease_keeper import LeaseKeeper
from worker.mcp_tools import WorkerMCP
from worker.memory_guard import MemoryGuard, resolve_budget
from worker.metrics import WorkerMetrics
from worker.probe_server import ProbeServer
from worker.registration import register_worker
from worker.schedule_loop import ScheduleLoop
from worker.tool_environment import worker_tool_environment
from worker.turn_services import TurnServices
from worker.turns import TurnRunner
from worker.workspace_handoff import WorkspaceHandoff

log = logging.getLogger("worker.process")

# Seconds between the main thread's checks for SIGTERM/SIGINT while it waits.
_SIGNAL_POLL = 0.1
# Seconds one blocking claim waits on an empty queue (a drain wakes it at once). Short,
# because a claim blocked on a primary that a failover replaced but left running sees
# nothing enqueued on the new one until it returns (Sentinel demotes the old one only
# at its next check, ~10 s later): 2 s bounds that blindness at one idle pop per 2 s.
CLAIM_BLOCK = 2.0
# Connections beyond one per turn thread: heartbeat, claims, events, lease keeper, probes.
_BACKGROUND_CONNECTIONS = 16


@dataclass
class WorkerOptions:
    """Per-process options; :meth:`from_settings` takes them from ClusterSettings."""

    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    concurrency: int = DEFAULT_CONCURRENCY
    cache_size: int = DEFAULT_CACHE_SIZE
    idle_ttl: float = DEFAULT_IDLE_TTL
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    sandbox_root: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_settings(cls, settings: ClusterSettings, **overrides: Any) -> WorkerOptions:
        """The per-worker fields of ``settings`` (concurrency, cache), plus ``overrides``."""
        return cls(
            concurrency=settings.concurrency,
            cache_size=settings.cache_size,
            idle_ttl=settings.idle_ttl,
            sweep_interval=settings.sweep_interval,
            **overrides,
        )


class WorkerProcess:
    """One worker, owner of its threads and pools: :meth:`start` returns, :meth:`stop` drains.

    Also a context manager: ``with WorkerProcess(settings=...) as worker:``
    starts it and drains it at the end. What :meth:`start` started is stopped
    in reverse order by :meth:`stop` (every step runs even if one fails), the
    connection pools the worker opened last; a start that fails part-way stops
    what it had started and closes the pools.
    """

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
        self.instance = uuid.uuid4().hex
        # What this worker opened and closes last: its connection pools (not a caller's clients).
        self._resources = contextlib.ExitStack()
        self.client, self.blocking = self._open_clients(client, blocking)
        self.metrics = WorkerMetrics()  # its own registry: several workers may share a process
        for counted in {id(self.client): self.client, id(self.blocking): self.blocking}.values():
            count_round_trips(counted, self.metrics.redis_round_trips.inc)
        stores = build_stores(
            settings,
            client=self.client,
            queue_client=self.blocking,  # blocking claims
            reply_client=self.client,
            on_recovered=self.metrics.recovered,
        )
        self.keyspace = stores.keyspace
        self.membership = stores.membership
        self.queue = stores.queue
        self.placement = stores.placement
        self.recovery = stores.recovery
        leases = stores.leases
        self.events = EventBus(self.client, self.keyspace)
        budget = parse_memory_budget(settings.agent_cache_memory)
        budget_bytes, budget_source = resolve_budget(budget) if budget else (None, "")
        self.cache: AgentCache[AIAgent] = AgentCache(
            max_size=self.options.cache_size,
            idle_ttl=self.options.idle_ttl,
            sweep_interval=self.options.sweep_interval,
            memory_budget=budget_bytes,  # also bounds the sum of the agents' estimates
        )
        self.memory_guard = (
            None
            if budget_bytes is None
            else MemoryGuard(
                budget_bytes=budget_bytes, source=budget_source, shed=self.cache.shed_for_memory
            )
        )
        self.event_log = ClusterEventLog(self.client, self.keyspace)
        self._health = HealthWriter(self.client, self.keyspace, ttl=settings.heartbeat_ttl)
        self.versions = RedisVersionStore(
            self.client, self.keyspace, max_config_bytes=settings.max_config_bytes
        )
        self.config = ConfigView(self.versions, endpoints=settings.endpoint_table())
        self.lease_keeper = LeaseKeeper(leases, ttl=settings.lease_ttl)
        self._tool_env = tool_env = worker_tool_environment(
            settings, sandbox_root=self.options.sandbox_root, environ=self.options.environ
        )
        tool_registry = tool_registry or default_registry()
        self.workspaces = WorkspaceHandoff(
            tool_env=tool_env,
            store=RedisWorkspaceStore(self.client, self.keyspace),
            tool_state=RedisToolStateStore(self.client, self.keyspace),
            leases=leases,
            ownership=stores.ownership,
            worker_id=self.worker_id,
            mode=settings.workspace_mode,
            max_bytes=settings.workspace_snapshot_max_bytes,
            lease_ttl=settings.lease_ttl,
        )
        self.mcp = WorkerMCP(
            registry=tool_registry, worker_id=self.worker_id, enabled=settings.mcp_from_config
        )
        self.notices = BackgroundNotices(
            client=self.client,
            keyspace=self.keyspace,
            worker_id=self.worker_id,
            queue=self.queue,
            placement=self.placement,
            membership=self.membership,
            reply_ttl=settings.reply_ttl,
            interval=settings.notify_poll_interval,
        )
        self.runner = self._turn_runner(stores, tool_env, tool_registry)
        self.executor = TurnExecutor(
            handler=self.runner.run,
            concurrency=self.options.concurrency,
            name=f"turns-{self.worker_id}",
        )
        self.cluster_events = WorkerEvents(
            worker_id=self.worker_id,
            runner=self.runner,
            config=self.config,
            versions=self.versions,
            cache=self.cache,
            mcp=self.mcp,
            on_drain=self._drain_event,
        )
        self.claims = ClaimLoop(
            queue=self.queue,
            worker_id=self.worker_id,
            executor=self.executor,
            block=CLAIM_BLOCK,
            on_done=lambda turn, _outcome: self.metrics.claimed(
                turn.job.submitted_at, turn.claimed_at
            ),
        )
        self.schedules = ScheduleLoop(
            store=ScheduleStore(self.client, self.keyspace),
            queue=self.queue,
            placement=self.placement,
            recovery=self.recovery,
            worker_id=self.worker_id,
            poll=settings.schedule_poll,
            claim_ttl=settings.schedule_claim_ttl,
            reply_ttl=settings.reply_ttl,
            rebalance_idle=settings.rebalance_idle,
        )
        self.metrics.watch(
            cache_metrics=self.cache.metrics,
            turns_running=self.executor.running,
            turns_in_flight=self.executor.in_flight,
            config_version=lambda: self.config.config_version,
            config_version_lost=lambda: self.config.lost_version,
            registry_generation=lambda: self.config.registry_generation,
        )
        self.probe: ProbeServer | None = None
        self._last_beat: float | None = None  # monotonic time of the last heartbeat Redis took
        self.known_state: WorkerState | None = WorkerState.ACTIVE  # as of the last heartbeat
        self._primary = ""  # the Redis primary's replication id, as of the last heartbeat
        self.drain_requested = threading.Event()
        self.fatal: BaseException | None = None
        self._heartbeat = HeartbeatLoop(
            interval=settings.heartbeat_interval,
            beat=self._beat,
            recover_dead=self.recovery.recover_dead,
            on_fatal=self._fatal,
        )
        self._subscriber: Subscriber | None = None
        self._draining = False
        self._started = False
        self.drain_timeout = settings.drain_timeout

    def _open_clients(
        self, client: redis.Redis | None, blocking: redis.Redis | None
    ) -> tuple[redis.Redis, redis.Redis]:
        """The caller's clients, or pools this worker opens (and closes when it stops)."""
        # Every turn thread may hold a connection of each client at once.
        pool_size = self.options.concurrency + _BACKGROUND_CONNECTIONS
        url = self.settings.redis_url
        if client is None:
            client = connect(url, pool_size=pool_size)
            self._resources.callback(client.close)
        if blocking is None:
            blocking = blocking_client(url, block_seconds=CLAIM_BLOCK, pool_size=pool_size)
            self._resources.callback(blocking.close)
        return client, blocking

    def _turn_runner(
        self, stores: ClusterStores, tool_env: ToolEnvironment, tool_registry: ToolRegistry
    ) -> TurnRunner:
        settings = self.settings
        return TurnRunner(
            TurnServices(
                worker_id=self.worker_id,
                client=self.client,
                keyspace=self.keyspace,
                leases=stores.leases,
                sessions=RedisSessionStore(
                    self.client,
                    self.keyspace,
                    processed_retention=settings.processed_retention,
                    durability=settings.durability(),
                ),
                replies=stores.replies,
                cache=self.cache,
                config=self.config,
                lease_keeper=self.lease_keeper,
                tool_env=tool_env,
                tool_registry=tool_registry,
                queue=self.queue,
                placement=self.placement,
                lease_ttl=settings.lease_ttl,
                reply_ttl=settings.reply_ttl,
                workspaces=self.workspaces,
                environ=self.options.environ,
                metrics=self.metrics,
                model_call_deadline=settings.model_call_deadline,
                collect_window=settings.collect_window,
                notices=self.notices,
            )
        )

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Register, then start heartbeat, events, lease keeper, sweeper and claiming.

        A failure part-way stops what had started (in reverse order) and raises.

        Raises:
            WorkerIdInUse: another live worker process has this id.
        """
        with contextlib.ExitStack() as started:
            started.enter_context(self._resources)  # the connection pools close last
            # Then the workspaces' volumes, once no turn runs (images stay).
            started.callback(self._tool_env.unmount_volumes)
            if self.settings.metrics_port:
                self.probe = self._start_probe()
                started.callback(self.probe.stop)
            check_eviction_policy(self.client, f"worker {self.worker_id}")
            self.config.refresh()
            self.mcp.apply(self.versions.current_config()[1])
            started.callback(self.mcp.close)
            self.versions.ack_registry(self.worker_id, self.config.registry_generation)
            self._register()
            started.callback(self.membership.deregister, self.worker_id)
            self.event_log.record("joined", f"{self.worker_id} joined", worker=self.worker_id)
            orphaned = self.queue.requeue_inflight(self.worker_id)
            if orphaned:
                log.warning(
                    "worker %s: %d orphaned in-flight turn(s) back on its queue",
                    self.worker_id,
                    orphaned,
                )
            self._heartbeat.start()
            started.callback(self._heartbeat.stop)
            self._subscriber = self.events.subscribe(
                self.cluster_events.on_event, on_reconnect=self.cluster_events.on_reconnect
            )
            started.callback(self._stop_subscriber)
            # A push between the first read and the subscription went unheard.
            self.cluster_events.on_reconnect()
            self.lease_keeper.start()
            started.callback(self.lease_keeper.stop)
            self.cache.start_sweeper()
            started.callback(self.cache.shutdown, hard=False)
            if self.memory_guard is not None:
                self.memory_guard.start()
                started.callback(self.memory_guard.stop)
            started.callback(self.executor.shutdown, wait=False)
            self.claims.start()
            started.callback(self.claims.stop)
            self.schedules.start()  # a drain stops it early: a draining worker claims no firing
            started.callback(self.schedules.stop)
            self.notices.start()
            started.callback(self.notices.stop)
            self._stack = started.pop_all()
        self._started = True
        log.info(
            "worker %s started (concurrency %d, namespace %s, redis %s)",
            self.worker_id,
            self.options.concurrency,
            self.settings.namespace,
            self.settings.redacted_url(),
        )

    def stop(self, *, timeout: float | None = None) -> bool:
        """Drain: hand queued turns on, finish running ones, release agents, deregister.

        Every step runs even if an earlier one fails (Redis down, say): what
        cannot be handed on now stays on this worker's lists, and the
        survivors' recovery hands it on once this worker's heartbeat expires.

        Returns:
            True if every running turn finished within the timeout (none was cut off).
        """
        if not self._started:
            self._resources.close()  # never started (or its start failed): the pools only
            return True
        self._started = False
        self._draining = True
        timeout = self.settings.drain_timeout if timeout is None else timeout
        finished = True
        self.event_log.record("drain_started", f"{self.worker_id} draining", worker=self.worker_id)
        steps: list[tuple[str, Callable[[], Any]]] = [
            (
                "mark draining",
                lambda: self.membership.set_state(self.worker_id, WorkerState.DRAINING),
            ),
            ("stop claiming", self._stop_claiming),
            ("stop the schedule loop", self.schedules.stop),
            ("snapshot idle workspaces", self.workspaces.snapshot_owned),
            ("hand over queued turns", self._hand_over_waiting),
        ]
        for name, step in steps:
            self._step(name, step)
        try:
            finished = self.executor.wait_idle(timeout)
            if not finished:
                cut = self.runner.cut_off()
                log.warning("drain timeout (%gs): cutting off %d running turn(s)", timeout, cut)
                self.executor.wait_idle(5.0)
        finally:
            self._step("hand over cut-off turns", lambda: self.recovery.hand_over(self.worker_id))
            self._step(
                "shut down the executor", lambda: self.executor.shutdown(wait=True, timeout=1.0)
            )
            # Recorded before the stack deregisters the worker, so whoever sees
            # it gone from membership also finds the event.
            self._step(
                "record the drain",
                lambda: self.event_log.record(
                    "drained",
                    f"{self.worker_id} drained and left"
                    + ("" if finished else " (drain timeout: running turns cut off and handed on)"),
                    worker=self.worker_id,
                    finished=finished,
                ),
            )
            self._stack.close()
        log.info(
            "worker %s stopped (%s)",
            self.worker_id,
            "all turns finished" if finished else "drain timeout: turns were cut off and handed on",
        )
        return finished

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_claiming(self) -> None:
        self.claims.stop(timeout=0)
        self.queue.wake_claimer(self.worker_id)
        self.claims.stop(timeout=2.0)

    def _hand_over_waiting(self) -> None:
        waiting = self.executor.close()
        only = [self.queue.job_id(job) for job in waiting]
        self.recovery.hand_over(self.worker_id, only=only)

    def _step(self, name: str, step: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            step()
        except Exception:
            log.exception("worker %s: drain step %r failed; going on", self.worker_id, name)
        log.debug("drain step %r took %.3fs", name, time.monotonic() - started)

    def _stop_subscriber(self) -> None:
        if self._subscriber is not None:
            self._subscriber.stop(timeout=2.0)

    def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT or a drain request, drain; 0 after a clean drain."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.drain_requested.set())
        self.start()
        # Wait in slices: a signal delivered to another thread only runs its
        # Python handler once the main thread gets back to the interpreter.
        while not self.drain_requested.wait(_SIGNAL_POLL):
            pass
        if self.fatal is not None:
            log.error("worker %s stops: %s", self.worker_id, self.fatal)
            self.stop(timeout=0)
            return 2
        self.stop(timeout=self.drain_timeout)
        return 0  # drained: finished or cut off, every turn was answered or handed on

    # -- background duties --------------------------------------------------------------

    def _register(self) -> None:
        register_worker(
            self.membership, self.keyspace, worker_id=self.worker_id, instance=self.instance
        )

    def _drain_event(self, timeout: float | None) -> None:
        """``agent-cluster drain ID`` (a drain event): drain, within its timeout if it gives one."""
        if self._draining:
            return
        if timeout is not None:
            self.drain_timeout = timeout
        self.drain_requested.set()

    def _fatal(self, exc: WorkerIdInUse) -> None:
        """Another live process holds this worker's id: stop (``run_forever`` exits 2)."""
        self.fatal = exc
        self.drain_requested.set()

    def _beat(self) -> float | None:
        """One heartbeat; returns the seconds until another worker's heartbeat expires."""
        # Read from outside: status, health probe.
        beat = beat_with_health(self, membership=self.membership, writer=self._health)
        state = beat.state
        if state is None and not self._draining:
            self._rejoin()
        elif state is WorkerState.DRAINING and not self._draining:
            log.info("worker %s was asked to drain", self.worker_id)
            self.drain_requested.set()
        if state is not None:
            self.known_state = state
            self._watch_primary(beat.primary)
        self._last_beat = time.monotonic()
        if beat.versions is not None:  # an idle worker catches up with a push it did not hear
            self.cluster_events.apply_versions(*beat.versions)
        return beat.next_expiry

    def _watch_primary(self, primary: str) -> None:
        """After a Redis failover (a new primary's replication id), check the in-flight list."""
        previous, self._primary = self._primary, primary or self._primary
        if previous and primary and primary != previous:
            log.warning(
                "worker %s: Redis failed over to a new primary; checking its in-flight turns "
                "(a commit the old primary took may be missing on the new one: run again)",
                self.worker_id,
            )
            self.claims.resync()

    def _rejoin(self) -> None:
        self.known_state = None
        dropped = self.cache.clear()
        log.warning(
            "worker %s is no longer registered in Redis: declared dead (paused or cut off "
            "longer than %gs; survivors hand on its queued and running turns) or Redis lost "
            "its data; dropped %d cached agent(s), registering again",
            self.worker_id,
            self.settings.heartbeat_ttl,
            dropped,
        )
        self._register()
        self.event_log.record(
            "rejoined",
            f"{self.worker_id} was declared dead and joined again",
            worker=self.worker_id,
        )

    def _start_probe(self) -> ProbeServer:
        probe = ProbeServer(
            registry=self.metrics.registry,
            live=self.liveness,
            ready=self.readiness,
            host=self.settings.metrics_host,
            port=self.settings.metrics_port,
        )
        probe.start()
        log.info(
            "worker %s: /metrics, /livez, /readyz on %s:%d",
            self.worker_id,
            self.settings.metrics_host,
            probe.port,
        )
        return probe

    def liveness(self) -> tuple[bool, str]:
        """Whether the process still works (its heartbeat thread runs): the liveness probe."""
        if self.fatal is not None:
            return False, f"{self.worker_id}: stopping: {self.fatal}"
        if self._started and not self._heartbeat.is_alive():
            return False, f"{self.worker_id}: heartbeat thread stopped"
        return True, f"{self.worker_id}: alive"

    def readiness(self) -> tuple[bool, str]:
        """Whether the worker serves: registered, active, a heartbeat Redis took within the TTL."""
        if self._draining or self.drain_requested.is_set():
            return False, f"{self.worker_id}: draining (takes no new sessions)"
        if not self._started:
            return False, f"{self.worker_id}: starting"
        if self._last_beat is None:
            return False, f"{self.worker_id}: no heartbeat yet"
        age = time.monotonic() - self._last_beat
        if age > self.settings.heartbeat_ttl:
            return False, f"{self.worker_id}: last heartbeat reached Redis {age:.1f}s ago"
        return True, f"{self.worker_id}: ready (heartbeat {age:.1f}s ago)"
