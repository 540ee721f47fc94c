"""What ``redis_durability: replica`` costs per turn, against ``none``, in one run.

Run: ``.venv/bin/python benchmarks/bench_durability.py [--turns 200] [--throughput-turns 600]``

Starts its own Redis primary and one replica (loopback ports), then for each
setting (``none`` first: the baseline) starts one worker process and a
coordinator with that setting and measures (a) the sequential latency of a
turn (offline zero-latency model: submit -> enqueue -> claim -> lease ->
commit -> reply) and (b) turns per second with 64 turns in flight. With
``replica`` four writes of each turn (enqueue, claim, lease, commit) wait for
``WAIT 1`` on their own connection, in the same round trip.

On loopback the replica acknowledges within the event loop's next turn, so
this is the floor of the cost; across hosts add one network round trip per
write (four per turn).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import redis

from cluster.settings import ClusterSettings
from coordinator.bench.hot_path import percentile
from coordinator.ingress import Coordinator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(tmp: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp), "--repl-diskless-sync-delay", "0", *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(250):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    return proc, port


@contextmanager
def replicated_redis(tmp: Path) -> Iterator[str]:
    primary, port = start_redis(tmp / "primary")
    replica, _ = start_redis(tmp / "replica", "--replicaof", "127.0.0.1", str(port))
    client = redis.Redis(port=port)
    try:
        while int(client.execute_command("WAIT", 1, 100)) < 1:
            pass
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        for proc in (replica, primary):
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def worker(url: str, namespace: str, durability: str, env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url", url,
         "--namespace", namespace, "--id", f"{namespace}-w", "--concurrency", "32"],
        env={**env, "AGENT_CLUSTER_REDIS_DURABILITY": durability},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def measure(
    url: str, durability: str, rounds: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    namespace = f"bd{durability}{rounds}"
    settings = ClusterSettings(redis_url=url, namespace=namespace, redis_durability=durability)
    primary = redis.Redis.from_url(url)
    with worker(url, namespace, durability, env):
        coordinator = Coordinator(settings=settings)
        deadline = time.monotonic() + 30
        while not coordinator.membership.active_workers():
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start")
            time.sleep(0.05)
        for i in range(20):  # build the agents of the sequential sessions
            coordinator.submit(f"session-{i}", "warm up")
        waits_start = _waits(primary)
        samples = []
        for i in range(args.turns):
            start = time.perf_counter()
            coordinator.submit(f"session-{i % 20}", f"message {i}")
            samples.append(time.perf_counter() - start)
        waits_per_turn = (_waits(primary) - waits_start) / args.turns
        sessions = [f"tp-{i}" for i in range(64)]
        with ThreadPoolExecutor(64) as pool:
            list(pool.map(lambda s: coordinator.submit(s, "warm up"), sessions))
            start = time.perf_counter()
            turns = range(args.throughput_turns)
            list(pool.map(lambda i: coordinator.submit(sessions[i % 64], f"m {i}"), turns))
            elapsed = time.perf_counter() - start
        coordinator.close()
    primary.close()
    return {
        "p50": statistics.median(samples),
        "p99": percentile(samples, 0.99),
        "per_second": args.throughput_turns / elapsed,
        "waits": waits_per_turn,
    }


def _waits(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_wait", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--throughput-turns", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2, help="alternating none/replica runs")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AGENT_CLUSTER_HOME": tmp}
        env.pop("OPENAI_API_KEY", None)
        runs: dict[str, list[dict[str, float]]] = {"none": [], "replica": []}
        with replicated_redis(Path(tmp)) as url:
            for n in range(args.rounds):  # alternate, so warm-up and noise hit both
                for mode in ("none", "replica") if n % 2 == 0 else ("replica", "none"):
                    runs[mode].append(measure(url, mode, n, args, env))
    base, durable = (
        {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]}
        for mode in ("none", "replica")
    )
    print(f"primary + 1 replica on loopback; {args.turns} sequential turns, "
          f"{args.throughput_turns} turns with 64 in flight (1 worker, offline model); "
          f"median of {args.rounds} alternating runs\n")  # fmt: skip
    print(
        "| redis_durability | WAITs/turn | p50 ms | p99 ms | turns/s | p50 ratio | turns/s ratio |"
    )
    print(
        "|------------------|------------|--------|--------|---------|-----------|---------------|"
    )
    for name, row in (("none (baseline)", base), ("replica", durable)):
        print(
            f"| {name:<16} | {row['waits']:10.1f} | {row['p50'] * 1e3:6.2f} | "
            f"{row['p99'] * 1e3:6.2f} | {row['per_second']:7.0f} | "
            f"{row['p50'] / base['p50']:8.2f}x | {row['per_second'] / base['per_second']:12.2f}x |"
        )


if __name__ == "__main__":
    main()
