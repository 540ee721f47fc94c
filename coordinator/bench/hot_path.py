"""Figures 1 and 2: what a turn costs on the hot path, and what it costs Redis.

With the zero-latency offline model, every millisecond of a turn is
overhead: routing, the rq job, the lease, the agent, the fenced commit, the
reply. Figure 1 measures it sequentially (p50, p99) and as turns/s with 1, 2
and 4 worker processes, beside each baseline of :mod:`coordinator.bench.baselines`.
Figure 2 reads the bench Redis' ``INFO commandstats`` and ``INFO cpu`` before
and after the throughput runs: Redis CPU microseconds and commands per turn,
against a raw rq no-op job, and which commands a turn issues.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue

from cluster.connection import connect
from cluster.serialization import MsgpackSerializer
from cluster.settings import ClusterSettings
from coordinator.bench.baselines import (
    InProcessIdeal,
    ModelEndpoint,
    RebuildPerRequest,
    StatelessWorkers,
    raw_rq_workers,
    stop_processes,
)
from coordinator.bench.durability import DurabilityFigures
from coordinator.bench.infra import RedisCounters, WorkerFleet, counted_per_turn
from coordinator.bench.plan import BenchPlan, Progress
from coordinator.ingress import Coordinator

__all__ = ["HotPathFigures", "measure_hot_path", "percentile", "redis_workers"]

WARMUP = 20
LATENCY_SESSIONS = 20
THROUGHPUT_SESSIONS = 100


@dataclass
class HotPathFigures:
    """Figure 1 (latency, throughput) and figure 2 (Redis per turn) of one run.

    ``worker_counts`` are the plan's; the counts above ``cpus`` were not run.
    """

    cpus: int = 1
    worker_counts: tuple[int, ...] = ()
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)
    redis_per_turn: dict[str, RedisCounters] = field(default_factory=dict)
    redis_turns: dict[str, int] = field(default_factory=dict)
    durability: list[DurabilityFigures] = field(default_factory=list)


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _timed(turns: int, run: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(turns + WARMUP):
        started = time.perf_counter()
        run(i)
        if i >= WARMUP:  # the first turns build agents and open connections
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def redis_workers(plan: BenchPlan, cpus: int) -> int:
    """Worker processes of the Redis-per-turn figure: 2 (as the issue measured), or fewer."""
    return max(n for n in plan.worker_counts_on(cpus) if n <= 2)


def _session(i: int, count: int) -> str:
    return f"s-{i % count}"


def measure_hot_path(
    plan: BenchPlan, *, redis_url: str, home: Path, cpus: int, progress: Progress
) -> HotPathFigures:
    """Run figures 1 and 2 against the bench Redis at ``redis_url`` on a machine of ``cpus``
    CPUs (worker counts above it are not run: they would measure contention)."""
    figures = HotPathFigures(cpus=cpus, worker_counts=plan.worker_counts)
    client = connect(redis_url)
    offline = ModelEndpoint()
    env = worker_env(home)
    try:
        ideal = InProcessIdeal(offline, home)
        figures.latency_ms[ideal.name] = _timed(
            plan.latency_turns, lambda i: ideal.turn(_session(i, LATENCY_SESSIONS), f"m{i}")
        )
        ideal.close()
        rebuild = RebuildPerRequest(offline, home)
        figures.latency_ms[rebuild.name] = _timed(
            plan.latency_turns, lambda i: rebuild.turn(_session(i, LATENCY_SESSIONS), f"m{i}")
        )
        progress.step("hot path: in-process baselines")
        ideal_tp = InProcessIdeal(offline, home)
        for i in range(THROUGHPUT_SESSIONS):
            ideal_tp.turn(_session(i, THROUGHPUT_SESSIONS), "warm up")
        started = time.perf_counter()
        for i in range(plan.throughput_turns):
            ideal_tp.turn(_session(i, THROUGHPUT_SESSIONS), f"m{i}")
        elapsed = time.perf_counter() - started
        figures.throughput[ideal_tp.name] = {1: plan.throughput_turns / elapsed}
        ideal_tp.close()

        for workers in plan.worker_counts_on(cpus):
            _raw_rq(plan, figures, client, redis_url, env, workers)
            progress.step(f"hot path: raw rq, {workers} worker(s)")
            _stateless(plan, figures, client, redis_url, env, workers)
            progress.step(f"hot path: stateless workers, {workers} worker(s)")
            _cluster(plan, figures, client, redis_url, home, workers)
            progress.step(f"hot path: agent-cluster, {workers} worker(s)")
    finally:
        client.close()
    return figures


def worker_env(home: Path) -> dict[str, str]:
    """The environment of the bench's rq worker processes (sandbox ``auto``, no api key)."""
    env = {**os.environ, "AGENT_CLUSTER_HOME": str(home), "AGENT_CLUSTER_SANDBOX": "auto"}
    env.pop("OPENAI_API_KEY", None)
    return env


def _raw_rq(
    plan: BenchPlan,
    figures: HotPathFigures,
    client: redis.Redis,
    url: str,
    env: dict[str, str],
    workers: int,
) -> None:
    name = f"raw-{workers}"
    queue = Queue(name, connection=client, serializer=MsgpackSerializer)
    procs = raw_rq_workers(url, name, workers, env)
    try:
        queue.enqueue("os.getpid").latest_result(timeout=30)  # a worker is up
        if workers == 1:
            figures.latency_ms["raw rq no-op job"] = _timed(
                plan.latency_turns,
                lambda i: queue.enqueue("os.getpid", result_ttl=60).latest_result(timeout=30),
            )
        turns = plan.throughput_turns

        def run() -> None:
            jobs = [queue.enqueue("os.getpid", result_ttl=60) for _ in range(turns)]
            for job in jobs:
                job.latest_result(timeout=120)

        started = time.perf_counter()
        counters = counted_per_turn(client, turns, run)
        elapsed = time.perf_counter() - started
        figures.throughput.setdefault("raw rq no-op job", {})[workers] = turns / elapsed
        if workers == redis_workers(plan, figures.cpus):
            figures.redis_per_turn["raw rq no-op job"] = counters
            figures.redis_turns["raw rq no-op job"] = turns
    finally:
        stop_processes(procs)


def _stateless(
    plan: BenchPlan,
    figures: HotPathFigures,
    client: redis.Redis,
    url: str,
    env: dict[str, str],
    workers: int,
) -> None:
    name = f"stateless-{workers}"
    baseline = StatelessWorkers(client, queue=name, namespace=name, endpoint=ModelEndpoint())
    procs = raw_rq_workers(url, name, workers, env)
    try:
        baseline.warm_up(workers)
        if workers == 1:
            figures.latency_ms[baseline.name] = _timed(
                plan.latency_turns,
                lambda i: baseline.turn(_session(i, LATENCY_SESSIONS), f"m{i}"),
            )
        turns = plan.throughput_turns

        def run() -> None:
            jobs = [
                baseline.submit(_session(i, THROUGHPUT_SESSIONS), f"m{i}") for i in range(turns)
            ]
            for job in jobs:
                baseline.result(job)

        started = time.perf_counter()
        counters = counted_per_turn(client, turns, run)
        elapsed = time.perf_counter() - started
        figures.throughput.setdefault(baseline.name, {})[workers] = turns / elapsed
        if workers == redis_workers(plan, figures.cpus):
            figures.redis_per_turn[baseline.name] = counters
            figures.redis_turns[baseline.name] = turns
    finally:
        stop_processes(procs)


def _cluster(
    plan: BenchPlan,
    figures: HotPathFigures,
    client: redis.Redis,
    url: str,
    home: Path,
    workers: int,
) -> None:
    namespace = f"hot{workers}"
    path = "agent-cluster"
    with WorkerFleet(redis_url=url, namespace=namespace, home=home) as fleet:
        fleet.start(*[f"w{i}" for i in range(workers)])
        coordinator = Coordinator(settings=ClusterSettings(redis_url=url, namespace=namespace))
        try:
            if workers == 1:
                figures.latency_ms[path] = _timed(
                    plan.latency_turns,
                    lambda i: coordinator.submit(_session(i, LATENCY_SESSIONS), f"m{i}"),
                )
            sessions = [_session(i, THROUGHPUT_SESSIONS) for i in range(THROUGHPUT_SESSIONS)]
            for handle in [coordinator.submit_async(s, "warm up") for s in sessions]:
                handle.result(timeout=120)  # agents built: the figure is the steady state
            turns = plan.throughput_turns

            def run() -> None:
                handles = [
                    coordinator.submit_async(_session(i, THROUGHPUT_SESSIONS), f"m{i}")
                    for i in range(turns)
                ]
                for handle in handles:
                    handle.result(timeout=120)

            started = time.perf_counter()
            counters = counted_per_turn(client, turns, run)
            elapsed = time.perf_counter() - started
            figures.throughput.setdefault(path, {})[workers] = turns / elapsed
            if workers == redis_workers(plan, figures.cpus):
                figures.redis_per_turn[path] = counters
                figures.redis_turns[path] = turns
        finally:
            coordinator.close()


def median(samples: list[float]) -> float:
    """The median (0 for no samples)."""
    return statistics.median(samples) if samples else 0.0
