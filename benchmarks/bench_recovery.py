"""How fast the cluster hands work on after a crash or a drain, against its own baselines.

Run: ``.venv/bin/python benchmarks/bench_recovery.py [--runs 3] [--turn 1.0]``

Starts its own redis-server and provider simulator (every turn takes
``--turn`` seconds), then, per run:

(a) crash: one worker runs a session's turn with two more queued behind it;
    a second worker is up; the first is killed with SIGKILL. Measured: kill ->
    the first of the dead worker's turns answered by the survivor, against
    the heartbeat TTL (the baseline: death cannot be noticed sooner) and the
    lease TTL (what an interrupted session waited before);
(b) drain: a worker runs one turn; SIGTERM 0.2 s after it was submitted.
    Measured: SIGTERM -> process exit, minus what was left of the running
    turn (SIGTERM -> the turn's commit, from the reply's ``ended_at``: the
    baseline a drain cannot beat).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.simulator import ProviderSimulator  # noqa: E402
from benchmarks.bench_cluster import redis_server, use_simulator  # noqa: E402
from cluster.connection import connect  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.membership import RedisMembership  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from cluster.versions import RedisVersionStore  # noqa: E402
from coordinator.ingress import Coordinator  # noqa: E402


def start_worker(url: str, namespace: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url", url,
             "--namespace", namespace, "--id", worker_id, "--concurrency", "4"],
            env=env, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


def wait_live(settings: ClusterSettings, *worker_ids: str) -> None:
    membership = RedisMembership(
        connect(settings.redis_url),
        Keyspace(settings.namespace),
        heartbeat_ttl=settings.heartbeat_ttl,
    )
    deadline = time.monotonic() + 30
    while not all(membership.is_alive(w) for w in worker_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers {worker_ids} did not register")
        time.sleep(0.02)


def crash_run(url: str, run: int, turn: float, tmp: Path) -> tuple[float, float]:
    namespace = f"crash{run}"
    settings = ClusterSettings(redis_url=url, namespace=namespace)
    victim = start_worker(url, namespace, "victim", tmp / f"{namespace}-victim.log")
    wait_live(settings, "victim")
    coord = Coordinator(settings=settings)
    handles = [coord.submit_async("s", f"message {i}") for i in range(3)]
    survivor = start_worker(url, namespace, "survivor", tmp / f"{namespace}-survivor.log")
    wait_live(settings, "survivor")
    time.sleep(turn / 4)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed, killed_wall = time.monotonic(), time.time()
    first: tuple[float, float] | None = None
    for handle in handles:
        reply = handle.result(timeout=120)
        if reply.worker_id == "survivor" and first is None:
            first = (reply.raw["started_at"] - killed_wall, time.monotonic() - killed)
    survivor.terminate()
    survivor.wait(timeout=60)
    coord.close()
    assert first is not None
    return first


def drain_run(url: str, run: int, turn: float, tmp: Path) -> tuple[float, float]:
    namespace = f"drain{run}"
    settings = ClusterSettings(redis_url=url, namespace=namespace)
    worker = start_worker(url, namespace, "w", tmp / f"{namespace}.log")
    wait_live(settings, "w")
    coord = Coordinator(settings=settings)
    handle = coord.submit_async("s", "one turn")
    time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    signalled, signalled_wall = time.monotonic(), time.time()
    code = worker.wait(timeout=120)
    exited, exited_wall = time.monotonic(), time.time()
    reply = handle.result(timeout=10)
    coord.close()
    assert code == 0 and reply.raw["turn"] == 1
    # The running turn's own end (its commit, by the worker's clock on this host).
    left_of_turn = max(0.0, reply.raw["ended_at"] - signalled_wall)
    return exited - signalled, min(left_of_turn, exited_wall - signalled_wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turn", type=float, default=1.0, help="seconds per model call")
    args = parser.parse_args()
    settings = ClusterSettings()
    with tempfile.TemporaryDirectory() as tmp_dir, redis_server(Path(tmp_dir)) as url:
        with ProviderSimulator(ttft=args.turn) as sim:
            client = connect(url)
            crashes, drains = [], []
            for run in range(args.runs):
                for namespace in (f"crash{run}", f"drain{run}"):
                    RedisVersionStore(
                        client, Keyspace(namespace), max_config_bytes=1 << 20
                    ).publish_config(use_simulator(sim.openai_base_url))
                crashes.append(crash_run(url, run, args.turn, Path(tmp_dir)))
                drains.append(drain_run(url, run, args.turn, Path(tmp_dir)))
                print(
                    f"run {run + 1}/{args.runs}: crash -> answered {crashes[-1][1]:.2f}s, "
                    f"drain {drains[-1][0]:.2f}s",
                    flush=True,
                )
    ttl = settings.heartbeat_ttl
    print()
    print(
        f"| crash (kill -9), {args.turn:g} s turns | median | max | vs heartbeat TTL ({ttl:g} s) | "
        f"vs lease TTL ({settings.lease_ttl:g} s) |"
    )
    print("|---|---|---|---|---|")
    for label, index in (
        ("-> handed-on turn started on the survivor", 0),
        ("-> its answer delivered", 1),
    ):
        values = [c[index] for c in crashes]
        mid = statistics.median(values)
        print(
            f"| {label} | {mid:.2f} s | {max(values):.2f} s | TTL + {mid - ttl:.2f} s | "
            f"{mid / settings.lease_ttl:.2f}x |"
        )
    overheads = [total - left for total, left in drains]
    print()
    print(
        "| drain: SIGTERM -> exit 0 | median | max | longest running turn left | overhead over it |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| {args.runs} runs | {statistics.median(d[0] for d in drains):.2f} s | "
        f"{max(d[0] for d in drains):.2f} s | {statistics.median(d[1] for d in drains):.2f} s | "
        f"+{statistics.median(overheads):.2f} s (max +{max(overheads):.2f} s) |"
    )


if __name__ == "__main__":
    main()
