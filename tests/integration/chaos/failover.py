"""One failover chaos run: a Sentinel topology, real workers, client traffic, seeded faults.

:func:`run_failover_chaos` starts a :class:`~tests.support.sentinel_topology.SentinelTopology`
(one primary, two replicas, three Sentinels), worker processes that reach Redis
through the topology's ``redis+sentinel://`` URL (``via="sentinel"``) or through
a proxy that follows the primary like a managed endpoint's DNS name
(``via="endpoint"``), and one worker, ``w0``, always behind a proxy of its own
(the target of the network cut). It drives :mod:`traffic` while a
:class:`~tests.integration.chaos.failover_player.FailoverPlayer` plays the
seeded faults; the traffic goes on ``tail`` seconds after the last fault
settled, then the clients finish what they began. Every process is stopped
before returning or raising. :mod:`failover_report` turns the outcome into the
checks and the table.

The durability setting (``none`` | ``replica``) reaches the workers as
``AGENT_CLUSTER_REDIS_DURABILITY`` and the clients' coordinators as the
``redis_durability`` setting, with ``redis_durability_replicas`` 2 (both
replicas); a product without that setting runs with its only behaviour, and
the report says so.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cluster.connection import connect
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.settings_sources import env_name
from tests.integration.chaos import checks
from tests.integration.chaos.failover_plan import FAULTS, plan_failovers
from tests.integration.chaos.failover_player import FailoverPlayer, PlayedFault, StaleTokenProbe
from tests.integration.chaos.failover_report import FailoverResult, evaluate
from tests.integration.chaos.harness import WorkerPool, worker_env
from tests.integration.chaos.traffic import MessageRecord, Traffic, TrafficConfig
from tests.support.sentinel_topology import SentinelTopology
from tests.support.tcp_proxy import TcpProxy

__all__ = [
    "DURABILITY_SETTING",
    "FailoverConfig",
    "FailoverResult",
    "FailoverRun",
    "run_failover_chaos",
]

DURABILITY_SETTING = "redis_durability"
REPLICAS_SETTING = "redis_durability_replicas"
# Every replica of the topology confirms a durable write: Sentinel under load sometimes fails
# over a primary that still serves, and with one replica required that primary would go on
# acknowledging writes the replica not yet moved to the promoted one confirms.
TOPOLOGY_REPLICAS = 2
CUT_WORKER = "w0"


def durability_supported() -> bool:
    """Whether this product has the ``redis_durability`` setting."""
    return DURABILITY_SETTING in {f.name for f in dataclasses.fields(ClusterSettings)}


@dataclass
class FailoverConfig:
    """One failover chaos run.

    Attributes:
        seed: Seeds the plan and the message texts.
        durability: ``none`` or ``replica`` (the ``redis_durability`` setting).
        workdir: Logs, Redis and Sentinel configs and the tools' home go here.
        faults: The fault kinds to play, each once (see :mod:`failover_plan`).
        via: ``sentinel`` (workers and clients use the ``redis+sentinel://`` URL)
            or ``endpoint`` (a proxy that follows the primary, like a managed Redis).
        workers: Worker processes.
        sessions: Client sessions.
        threads: Client threads.
        tail: Seconds of traffic after the last fault settled.
        settle: Most seconds the clients keep waiting/resubmitting after that.
        attempt_timeout: Seconds without a reply before a client resubmits.
        sh_fraction: Share of messages that run ``!sh sleep S; echo ...``.
        sh_sleep: The ``S`` above.
    """

    seed: int
    durability: str
    workdir: Path
    faults: tuple[str, ...] = FAULTS
    via: str = "sentinel"
    workers: int = 3
    sessions: int = 24
    threads: int = 6
    tail: float = 5.0
    settle: float = 40.0
    attempt_timeout: float = 20.0
    sh_fraction: float = 0.2
    sh_sleep: float = 0.3


@dataclass
class FailoverRun:
    """What a run did: the faults played, the client records, what Redis and the logs hold."""

    config: FailoverConfig
    namespace: str
    played: list[PlayedFault]
    records: list[MessageRecord]
    logs: dict[str, Path]
    errors: list[str] = field(default_factory=list)
    durability_applied: bool = True
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    unanswered_at_stop: list[str] = field(default_factory=list)
    """Where each accepted, unanswered message sat when traffic ended (workers still up)."""


def run_failover_chaos(
    config: FailoverConfig, say: Callable[[str], None] = print
) -> FailoverResult:
    """Run it and check it (reading the last primary before anything is stopped)."""
    if config.durability not in ("none", "replica"):
        raise ValueError(f"durability must be none or replica, got {config.durability!r}")
    if config.via not in ("sentinel", "endpoint"):
        raise ValueError(f"via must be sentinel or endpoint, got {config.via!r}")
    namespace = f"fo{config.seed}{config.durability[0]}-{uuid.uuid4().hex[:6]}"
    plan = plan_failovers(config.seed, config.faults)
    started = time.monotonic()
    t0 = [started]

    def clock() -> float:
        return time.monotonic() - t0[0]

    topology = SentinelTopology(config.workdir / "redis")
    proxies: list[TcpProxy] = []
    pool: WorkerPool | None = None
    traffic: Traffic | None = None
    player: FailoverPlayer | None = None
    try:
        topology.start()
        cut_proxy = TcpProxy(topology.current_primary)
        proxies.append(cut_proxy)
        url = topology.url
        if config.via == "endpoint":
            endpoint = TcpProxy(topology.current_primary)
            proxies.append(endpoint)
            url = f"redis://{endpoint.host}:{endpoint.port}/0"
        say(f"topology: {topology.url} (workers via {config.via}: {url}); namespace {namespace}")
        say("plan: " + "; ".join(f"+{f.gap:g}s {f.describe()}" for f in plan))
        applied = durability_supported()
        env = worker_env(config.workdir / "home", config.settle + 600)
        if applied:
            env[env_name(DURABILITY_SETTING)] = config.durability
            env[env_name(REPLICAS_SETTING)] = str(TOPOLOGY_REPLICAS)
        else:
            say("this product has no redis_durability setting: running with its only behaviour")
        pool = WorkerPool(
            url, namespace, config.workdir / "logs", clock, env=env,
            redis_urls={CUT_WORKER: f"redis://{cut_proxy.host}:{cut_proxy.port}/0"},
        )  # fmt: skip
        for i in range(config.workers):
            pool.start(f"w{i}")
        pool.wait_registered(connect(url, socket_timeout=5), config.workers)
        overrides: dict[str, object] = (
            {DURABILITY_SETTING: config.durability, REPLICAS_SETTING: TOPOLOGY_REPLICAS}
            if applied
            else {}
        )
        settings = ClusterSettings.from_mapping(
            {"redis_url": url, "namespace": namespace, "heartbeat_interval": 0.5,
             "heartbeat_ttl": 2.0, "lease_ttl": 5.0, **overrides}
        )  # fmt: skip
        t0[0] = time.monotonic()
        traffic = Traffic(
            TrafficConfig(
                seed=config.seed, sessions=config.sessions, threads=config.threads,
                traffic_end=3600.0, deadline=3600.0 + config.settle,
                attempt_timeout=config.attempt_timeout, sh_fraction=config.sh_fraction,
                sh_sleep=config.sh_sleep,
            ),
            settings,
            clock,
        )  # fmt: skip
        traffic.start()
        probe = StaleTokenProbe(lambda: connect(url, socket_timeout=2), namespace)
        player = FailoverPlayer(plan, topology, cut_proxy, probe, clock, say)
        player.start()
        _watch(traffic, player, pool, clock, say, config)
        unanswered = _where_unanswered(topology, namespace, traffic.records(), pool.states())
        say(f"[{clock():7.1f}s] traffic over; stopping the workers (SIGTERM)")
        codes = pool.shutdown()
        traffic.join(30)
        errors = [*traffic.errors, *player.errors]
        if traffic.alive():
            errors.append("client threads did not stop by the deadline")
        run = FailoverRun(
            config=config, namespace=namespace, played=list(player.played),
            records=traffic.records(), logs={w: p.log for w, p in pool.workers.items()},
            errors=errors, durability_applied=applied, exit_codes=codes,
            unanswered_at_stop=unanswered,
        )  # fmt: skip
        client = topology.primary().client(30)
        try:
            result = evaluate(run, client)
        finally:
            client.close()
        result.elapsed = time.monotonic() - started
        return result
    finally:
        _cleanup(traffic, player, pool, proxies, topology)


def _where_unanswered(
    topology: SentinelTopology,
    namespace: str,
    records: list[MessageRecord],
    states: dict[str, str],
) -> list[str]:
    """Where the accepted, unanswered messages sit on the primary while the workers still run.

    Read before the workers stop: a draining worker hands its queue on, so the
    lists read after the run no longer say where a message was stuck.
    """
    waiting = [r for r in records if r.accepted and not r.answered and r.gave_up is None]
    if not waiting:
        return []
    client = topology.primary().client(30)
    try:
        keyspace = Keyspace(namespace)
        stored = checks.load_sessions(client, keyspace, waiting)
        return [
            checks.diagnose_lost(client, keyspace, r, stored[r.session].stored, states)[1]
            for r in waiting
        ]
    finally:
        client.close()


def _watch(
    traffic: Traffic,
    player: FailoverPlayer,
    pool: WorkerPool,
    clock: Callable[[], float],
    say: Callable[[str], None],
    config: FailoverConfig,
) -> None:
    """Until the traffic is over: end it ``tail`` seconds after the player finished."""
    next_line, ended = 5.0, False
    while traffic.alive():
        time.sleep(0.2)
        if not ended and not player.is_alive():
            now = clock()
            traffic.end_at(now + config.tail, now + config.tail + config.settle)
            ended = True
        if clock() >= next_line:
            next_line += 5.0
            running = ",".join(pool.running())
            say(f"[{clock():7.1f}s] {traffic.progress()} | running workers {running}")
    player.stop()
    player.join(60)


def _cleanup(
    traffic: Traffic | None,
    player: FailoverPlayer | None,
    pool: WorkerPool | None,
    proxies: list[TcpProxy],
    topology: SentinelTopology,
) -> None:
    if traffic is not None:
        traffic.abort()
    if player is not None:
        player.stop()
        if player.is_alive():
            player.join(60)
    if pool is not None:
        pool.shutdown(timeout=10)
    if traffic is not None:
        traffic.join(30)
    for proxy in proxies:
        proxy.close()
    topology.close()
