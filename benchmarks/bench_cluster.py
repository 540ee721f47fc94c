"""Turn latency and throughput of the cluster against raw rq, in one run.

Run: ``.venv/bin/python benchmarks/bench_cluster.py [--turns 300] [--throughput-turns 1000]``

Starts its own redis-server on a free loopback port, then measures, each
against a baseline in the same process:

(a) end-to-end latency of one turn (offline, zero-latency model: submit ->
    route -> rq job -> worker -> lease -> agent -> fenced commit -> reply)
    against a raw rq no-op job (enqueue ``os.getpid`` -> rq SimpleWorker ->
    ``latest_result``), both sequential, both with the msgpack serializer;
(b) turns per second with 2 worker processes against 2 raw rq SimpleWorkers
    running no-op jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rq import Queue

from cluster.serialization import MsgpackSerializer
from cluster.settings import ClusterSettings
from coordinator.bench.hot_path import percentile
from coordinator.bench.infra import redis_server
from coordinator.ingress import Coordinator

__all__ = ["redis_server", "use_simulator"]  # redis_server: shared with `agent-cluster bench`

SERIALIZER = "cluster.serialization.MsgpackSerializer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def use_simulator(openai_base_url: str) -> dict[str, Any]:
    """Point the built-in ``simulator`` endpoint of the worker processes started from here
    on (they inherit this environment) at a simulator; returns the config naming it."""
    os.environ["AGENT_CLUSTER_ENDPOINTS"] = json.dumps(
        {"simulator": {"provider": "openai", "base_url": openai_base_url}}
    )
    return {"model": {"default": "sim-gpt", "endpoint": "simulator"}}


@contextmanager
def processes(commands: list[list[str]], env: dict[str, str]) -> Iterator[None]:
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in commands
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def rq_workers(url: str, queue: str, n: int) -> list[list[str]]:
    rq = str(Path(sys.executable).with_name("rq"))
    return [
        [
            rq,
            "worker",
            "-w",
            "rq.worker.SimpleWorker",
            "-S",
            SERIALIZER,
            "--url",
            url,
            "--name",
            f"raw-{queue}-{i}",
            queue,
        ]
        for i in range(n)
    ]


def cluster_workers(url: str, namespace: str, n: int) -> list[list[str]]:
    return [
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "worker",
            "--redis-url",
            url,
            "--namespace",
            namespace,
            "--id",
            f"bench-{i}",
            "--concurrency",
            "32",
        ]
        for i in range(n)
    ]


def raw_rq_latency(url: str, turns: int, env: dict[str, str]) -> list[float]:
    client = redis.Redis.from_url(url)
    queue = Queue("raw-latency", connection=client, serializer=MsgpackSerializer)
    samples = []
    with processes(rq_workers(url, "raw-latency", 1), env):
        for i in range(turns + 20):
            start = time.perf_counter()
            job = queue.enqueue("os.getpid", result_ttl=60)
            result = job.latest_result(timeout=10)
            assert result is not None and result.type == result.Type.SUCCESSFUL, result
            if i >= 20:  # warm-up
                samples.append(time.perf_counter() - start)
    client.close()
    return samples


def wait_workers(coordinator: Coordinator, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(coordinator.membership.active_workers()) < n:
        if time.monotonic() > deadline:
            raise SystemExit("cluster workers did not start")
        time.sleep(0.05)


def cluster_latency(url: str, turns: int, env: dict[str, str]) -> list[float]:
    settings = ClusterSettings(redis_url=url, namespace="benchlat")
    samples = []
    with processes(cluster_workers(url, "benchlat", 1), env):
        coordinator = Coordinator(settings=settings)
        wait_workers(coordinator, 1)
        for i in range(turns + 20):
            start = time.perf_counter()
            coordinator.submit(f"session-{i % 20}", f"message {i}")
            if i >= 20:  # the first 20 build agents
                samples.append(time.perf_counter() - start)
        coordinator.close()
    return samples


def raw_rq_throughput(url: str, jobs: int, env: dict[str, str]) -> float:
    client = redis.Redis.from_url(url)
    queue = Queue("raw-throughput", connection=client, serializer=MsgpackSerializer)
    with processes(rq_workers(url, "raw-throughput", 2), env):
        queue.enqueue("os.getpid").latest_result(timeout=10)  # workers are up
        start = time.perf_counter()
        last = [queue.enqueue("os.getpid", result_ttl=60) for _ in range(jobs)]
        for job in last:
            job.latest_result(timeout=60)
        elapsed = time.perf_counter() - start
    client.close()
    return jobs / elapsed


def cluster_throughput(url: str, turns: int, env: dict[str, str]) -> float:
    settings = ClusterSettings(redis_url=url, namespace="benchtp")
    with processes(cluster_workers(url, "benchtp", 2), env):
        coordinator = Coordinator(settings=settings)
        wait_workers(coordinator, 2)
        sessions = [f"s-{i}" for i in range(100)]
        for s in sessions:  # build the agents first: we measure steady state
            coordinator.submit(s, "warm up")
        start = time.perf_counter()
        handles = [coordinator.submit_async(sessions[i % 100], f"m {i}") for i in range(turns)]
        for handle in handles:
            handle.result(timeout=120)
        elapsed = time.perf_counter() - start
        coordinator.close()
    return turns / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--throughput-turns", type=int, default=1000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AGENT_CLUSTER_HOME": tmp}
        env.pop("OPENAI_API_KEY", None)
        with redis_server(Path(tmp)) as url:
            print(f"(a) sequential latency, {args.turns} turns/jobs, ms", flush=True)
            raw = raw_rq_latency(url, args.turns, env)
            ours = cluster_latency(url, args.turns, env)
            print("| path                              |   p50 |   p99 | p50 ratio | p99 ratio |")
            print("|-----------------------------------|-------|-------|-----------|-----------|")
            for name, s in (
                ("raw rq no-op job (baseline)", raw),
                ("agent-cluster turn (offline model)", ours),
            ):
                print(
                    f"| {name:<33} | {statistics.median(s) * 1e3:5.2f} | "
                    f"{percentile(s, 0.99) * 1e3:5.2f} | "
                    f"{statistics.median(s) / statistics.median(raw):8.2f}x | "
                    f"{percentile(s, 0.99) / percentile(raw, 0.99):8.2f}x |"
                )
            print(
                f"\n(b) throughput with 2 worker processes, {args.throughput_turns} turns/jobs",
                flush=True,
            )
            raw_tp = raw_rq_throughput(url, args.throughput_turns, env)
            our_tp = cluster_throughput(url, args.throughput_turns, env)
            print("| path                                   | per second | ratio |")
            print("|----------------------------------------|------------|-------|")
            print(f"| 2 raw rq SimpleWorkers, no-op (baseline) | {raw_tp:10.0f} | 1.00x |")
            print(
                f"| 2 agent-cluster workers, offline turns   | {our_tp:10.0f} | "
                f"{our_tp / raw_tp:4.2f}x |"
            )


if __name__ == "__main__":
    main()
