"""Figure 2 with durability ``replica``: what waiting for a replica costs a turn.

On a private primary with one replica (:func:`coordinator.bench.infra.replicated_redis`),
each setting of ``redis_durability`` (``none`` first: the baseline) gets one
worker process and a coordinator with that setting, and is measured twice:
sequential turns with the zero-latency offline model (p50, p99), then turns
with 64 in flight (turns/s), with the primary's ``INFO commandstats`` and
``INFO cpu`` read before and after: Redis CPU and commands per turn. With
``replica`` the enqueue, claim, lease and commit writes each wait for ``WAIT n``
(every attached replica: here one) and read ``ROLE`` in the same round trip
(the WAITs per turn are counted). The replica's own CPU
is not in the figure: the primary's is what every worker shares.

On loopback the replica acknowledges within the event loop's next turn, so
this is the floor of the cost; across hosts add one network round trip per
write. ``benchmarks/bench_durability.py`` runs the same measurement in
alternating rounds.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.connection import connect
from cluster.settings import ClusterSettings
from coordinator.bench.infra import RedisCounters, WorkerFleet, counted_per_turn
from coordinator.ingress import Coordinator

__all__ = ["DURABILITIES", "DurabilityFigures", "measure_durability"]

DURABILITIES = ("none", "replica")
"""The settings compared, the baseline first."""
IN_FLIGHT = 64
WARM_SESSIONS = 20
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class DurabilityFigures:
    """One setting's figures: turn latency, turns/s and what a turn costs the primary."""

    durability: str
    latency_ms: list[float]
    turns_per_second: float
    redis_per_turn: RedisCounters

    @property
    def p50_ms(self) -> float:
        """Median sequential turn, ms."""
        return statistics.median(self.latency_ms)

    @property
    def waits_per_turn(self) -> float:
        """``WAIT`` commands a turn issued (0 with ``none``)."""
        return self.redis_per_turn.calls.get("WAIT", 0.0)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results."""
        return {
            "durability": self.durability,
            "latency_ms": self.latency_ms,
            "turns_per_second": self.turns_per_second,
            "redis_cpu_us": self.redis_per_turn.cpu_seconds * 1e6,
            "redis_calls": dict(self.redis_per_turn.calls),
        }


def measure_durability(
    url: str,
    durability: str,
    *,
    home: Path,
    turns: int,
    throughput_turns: int,
    namespace: str | None = None,
) -> DurabilityFigures:
    """Measure one ``redis_durability`` setting on the replicated Redis at ``url``.

    Args:
        url: The primary of :func:`~coordinator.bench.infra.replicated_redis`.
        durability: ``none`` or ``replica``.
        home: ``AGENT_CLUSTER_HOME`` of the worker.
        turns: Sequential turns timed (after one warm-up turn on each of 20 sessions).
        throughput_turns: Turns sent with 64 in flight (Redis counted over them).
        namespace: Keyspace of this measurement (default ``dur-<durability>``).
    """
    namespace = namespace or f"dur-{durability}"
    settings = ClusterSettings(redis_url=url, namespace=namespace, redis_durability=durability)
    primary = connect(url)
    with WorkerFleet(redis_url=url, namespace=namespace, home=home, durability=durability) as fleet:
        fleet.start("w")
        coordinator = Coordinator(settings=settings)
        try:
            for i in range(WARM_SESSIONS):  # build the agents of the sequential sessions
                coordinator.submit(f"session-{i}", "warm up")
            samples = []
            for i in range(turns):
                started = time.perf_counter()
                coordinator.submit(f"session-{i % WARM_SESSIONS}", f"message {i}")
                samples.append((time.perf_counter() - started) * 1000)
            sessions = [f"tp-{i}" for i in range(IN_FLIGHT)]
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                list(pool.map(lambda s: coordinator.submit(s, "warm up"), sessions))

                def run() -> None:
                    turns = range(throughput_turns)
                    list(
                        pool.map(
                            lambda i: coordinator.submit(sessions[i % IN_FLIGHT], f"m {i}"), turns
                        )
                    )

                started = time.perf_counter()
                per_turn = counted_per_turn(primary, throughput_turns, run)
                elapsed = time.perf_counter() - started
        finally:
            coordinator.close()
            primary.close()
    return DurabilityFigures(
        durability=durability,
        latency_ms=samples,
        turns_per_second=throughput_turns / elapsed,
        redis_per_turn=per_turn,
    )
