"""Figure 4: control and failure, each against the floor it cannot beat.

- config push -> every stale agent released on all ``push_workers`` workers
  (p50, p99 of the last worker's release, read from the workers' log lines),
  against a bare Redis PUBLISH -> subscriber in this process;
- kill -9 of a worker running a turn with two more queued -> the first of its
  turns answered by the survivor, against the heartbeat TTL (death cannot be
  noticed sooner);
- drain (SIGTERM) during a turn -> the worker's exit 0, against what was left
  of its running turn;
- gateway waiting-caller capacity (:mod:`coordinator.bench.waiters`): callers
  held and answered by one gateway, its Redis connections and memory per
  caller, and a newcomer's quick message while they wait against the same
  gateway idle.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from agent.simulator import ProviderSimulator
from cluster.connection import connect
from cluster.keys import Keyspace
from cluster.settings import ClusterSettings
from cluster.versions import RedisVersionStore
from coordinator.bench.infra import WorkerFleet
from coordinator.bench.plan import BenchPlan, Progress
from coordinator.bench.waiters import WaitingLevel, measure_waiting
from coordinator.ingress import Coordinator

__all__ = ["ControlFigures", "measure_control", "publish_floor", "released_at"]

_RELEASED = re.compile(r"^(\S+ \S+) worker\.process INFO config changed \(version (\d+),")
SLOW_TURN = 1.0
"""Seconds every model call takes in the crash and drain figures."""


@dataclass
class ControlFigures:
    """Figure 4 of one run (seconds unless named _ms)."""

    push_last_ms: list[float] = field(default_factory=list)
    publish_floor_ms: list[float] = field(default_factory=list)
    crash_answered: float = 0.0
    heartbeat_ttl: float = 0.0
    drain_seconds: float = 0.0
    drain_turn_left: float = 0.0
    waiting: WaitingLevel | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON results."""
        data = dict(self.__dict__)
        data["waiting"] = None if self.waiting is None else self.waiting.as_dict()
        return data


def released_at(log: Path, version: int) -> float | None:
    for line in log.read_text(errors="replace").splitlines():
        match = _RELEASED.match(line)
        if match and int(match.group(2)) == version:
            stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None


def publish_floor(url: str, runs: int) -> list[float]:
    """Redis PUBLISH -> a subscriber thread's receipt, ms: what any announcement pays."""
    sub, pub = redis.Redis.from_url(url), redis.Redis.from_url(url)
    pubsub = sub.pubsub()
    pubsub.subscribe("bench-floor")
    pubsub.get_message(timeout=1)
    got = threading.Event()

    def listen() -> None:
        for message in pubsub.listen():  # type: ignore[no-untyped-call]
            if message["type"] == "message":
                if message["data"] == b"stop":
                    return
                got.set()

    thread = threading.Thread(target=listen, name="bench-publish-floor", daemon=True)
    thread.start()
    times = []
    for _ in range(runs):
        got.clear()
        started = time.perf_counter()
        pub.publish("bench-floor", b"x")
        got.wait(5)
        times.append((time.perf_counter() - started) * 1000)
    pub.publish("bench-floor", b"stop")
    thread.join(5)
    pubsub.close()
    sub.close()
    pub.close()
    return times


def _push(plan: BenchPlan, figures: ControlFigures, url: str, home: Path) -> None:
    namespace = "ctlpush"
    ids = [f"w{i}" for i in range(1, plan.push_workers + 1)]
    client = connect(url)
    store = RedisVersionStore(client, Keyspace(namespace))
    with WorkerFleet(redis_url=url, namespace=namespace, home=home, concurrency=4) as fleet:
        fleet.start(*ids)
        coordinator = Coordinator(settings=ClusterSettings(redis_url=url, namespace=namespace))
        try:
            sessions = [f"s{i}" for i in range(4 * plan.push_workers)]
            for push in range(plan.pushes):
                for handle in [coordinator.submit_async(s, "hi") for s in sessions]:
                    handle.result(timeout=60)  # every worker holds agents again
                started = time.time()
                document = {"model": {"max_tokens": 1000 + push}}
                version = store.publish_config(document, author="bench")
                seen: dict[str, float] = {}
                deadline = time.monotonic() + 30
                while len(seen) < len(ids) and time.monotonic() < deadline:
                    for worker in ids:
                        if worker not in seen:
                            at = released_at(fleet.log_of(worker), version)
                            if at is not None:
                                seen[worker] = at
                    time.sleep(0.005)
                if len(seen) < len(ids):
                    raise RuntimeError(f"push {version}: only {sorted(seen)} released in 30 s")
                figures.push_last_ms.append(max(seen.values()) - started)
        finally:
            coordinator.close()
            client.close()
    figures.push_last_ms = [1000 * s for s in figures.push_last_ms]
    figures.publish_floor_ms = publish_floor(url, plan.pushes)


def _slow_config(sim: ProviderSimulator) -> tuple[str, dict[str, Any]]:
    endpoints = json.dumps({"bench-slow": {"provider": "openai", "base_url": sim.openai_base_url}})
    return endpoints, {"model": {"endpoint": "bench-slow", "default": "gpt-5"}}


def _crash(figures: ControlFigures, url: str, home: Path, sim: ProviderSimulator) -> None:
    namespace = "ctlcrash"
    settings = ClusterSettings(redis_url=url, namespace=namespace)
    endpoints, config = _slow_config(sim)
    client = connect(url)
    RedisVersionStore(client, Keyspace(namespace)).publish_config(config, author="bench")
    client.close()
    with WorkerFleet(
        redis_url=url, namespace=namespace, home=home, endpoints=endpoints, concurrency=4
    ) as fleet:
        fleet.start("victim")
        coordinator = Coordinator(settings=settings)
        try:
            handles = [coordinator.submit_async("crash", f"message {i}") for i in range(3)]
            fleet.start("survivor")
            time.sleep(SLOW_TURN / 4)  # the victim is inside its first model call
            fleet.kill("victim")
            killed = time.monotonic()
            first = None
            for handle in handles:
                reply = handle.result(timeout=120)
                if reply.worker_id == "survivor" and first is None:
                    first = time.monotonic() - killed
            figures.crash_answered = first if first is not None else float("nan")
            figures.heartbeat_ttl = settings.heartbeat_ttl
        finally:
            coordinator.close()


def _drain(figures: ControlFigures, url: str, home: Path, sim: ProviderSimulator) -> None:
    namespace = "ctldrain"
    endpoints, config = _slow_config(sim)
    client = connect(url)
    RedisVersionStore(client, Keyspace(namespace)).publish_config(config, author="bench")
    client.close()
    with WorkerFleet(
        redis_url=url, namespace=namespace, home=home, endpoints=endpoints, concurrency=4
    ) as fleet:
        fleet.start("w")
        coordinator = Coordinator(settings=ClusterSettings(redis_url=url, namespace=namespace))
        try:
            handle = coordinator.submit_async("drain", "one turn")
            time.sleep(0.2)
            signalled, signalled_wall = time.monotonic(), time.time()
            code = fleet.drain("w")
            figures.drain_seconds = time.monotonic() - signalled
            reply = handle.result(timeout=30)
            if code != 0:
                raise RuntimeError(f"a drained worker exited {code}, not 0")
            figures.drain_turn_left = max(0.0, float(reply.raw["ended_at"]) - signalled_wall)
        finally:
            coordinator.close()


def measure_control(
    plan: BenchPlan, *, redis_url: str, home: Path, progress: Progress
) -> ControlFigures:
    """Run figure 4 on the bench Redis."""
    figures = ControlFigures()
    _push(plan, figures, redis_url, home)
    progress.step(f"control: config push, {plan.push_workers} workers")
    with ProviderSimulator(ttft=SLOW_TURN) as sim:
        _crash(figures, redis_url, home, sim)
        progress.step("control: kill -9")
        _drain(figures, redis_url, home, sim)
        progress.step("control: drain")
    figures.waiting = measure_waiting(plan.waiting_callers, redis_url=redis_url, home=home)
    progress.step(f"control: {plan.waiting_callers:,} waiting callers, one gateway")
    return figures


def median(values: list[float]) -> float:
    """The median (nan for none)."""
    return statistics.median(values) if values else float("nan")
