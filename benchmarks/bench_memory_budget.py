"""What ``agent_cache_memory`` holds a worker's RSS to, and what it costs the turns.

Run: ``.venv/bin/python benchmarks/bench_memory_budget.py [--sessions 200] [--message-kb 200]``

Starts its own redis-server, then one worker process at a time (offline
model, the default cache cap of 128): first without a budget (the baseline),
then with budgets of its idle RSS plus 24, 48 and 96 MiB. Each run sends one
long message to each of N new sessions, one after the other, and samples the
worker's RSS (``/proc/PID/status``) after every turn. Printed per run: idle
and peak RSS, the peak against the budget, agents shed, and the turn rate
against the baseline's in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_cluster import redis_server  # noqa: E402
from cluster.health_record import HealthRecord  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.membership import RedisMembership  # noqa: E402
from cluster.settings import ClusterSettings  # noqa: E402
from coordinator.ingress import Coordinator  # noqa: E402

MIB = 1024**2


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(url: str, tmp: Path, name: str, budget: int | None, sessions: int, size: int) -> dict:
    env = {**os.environ, "AGENT_CLUSTER_HOME": str(tmp / name), "AGENT_CLUSTER_SANDBOX": "auto"}
    if budget is not None:
        env["AGENT_CLUSTER_AGENT_CACHE_MEMORY"] = str(budget)
    cmd = [sys.executable, "-m", "coordinator.cli", "worker", "--redis-url", url]
    proc = subprocess.Popen(
        [*cmd, "--namespace", name, "--id", "bench"],
        env=env,
        stderr=(tmp / f"{name}.log").open("w"),
    )
    client = redis.Redis.from_url(url)
    membership = RedisMembership(client, Keyspace(name), heartbeat_ttl=5.0)
    while not membership.is_alive("bench"):
        time.sleep(0.05)
    time.sleep(1.0)
    idle = rss(proc.pid)
    settings = ClusterSettings.from_mapping({"redis_url": url, "namespace": name})
    coord = Coordinator(settings=settings)
    peak = 0
    started = time.perf_counter()
    for i in range(sessions):
        coord.submit(f"s{i}", f"{i} " + "x" * size, timeout=120)
        peak = max(peak, rss(proc.pid))
    elapsed = time.perf_counter() - started
    time.sleep(2.0)  # a heartbeat with the last memory check
    raw = client.hget(Keyspace(name).worker_health("bench"), "record")
    health = HealthRecord.from_json(raw) if raw else None
    proc.terminate()
    proc.wait(timeout=60)
    coord.close()
    client.close()
    return {
        "idle": idle,
        "peak": peak,
        "rate": sessions / elapsed,
        "shed": health.cache_memory_evictions if health else 0,
        "cached": health.cache_size if health else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--message-kb", type=int, default=200)
    args = parser.parse_args()
    size = args.message_kb * 1000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with redis_server(tmp) as url:
            base = run(url, tmp, "nobudget", None, args.sessions, size)
            rows = [("none (baseline)", None, base)]
            for headroom in (24, 48, 96):
                budget = base["idle"] + headroom * MIB
                label = f"idle + {headroom} MiB = {budget / MIB:.0f} MiB"
                rows.append(
                    (label, budget, run(url, tmp, f"b{headroom}", budget, args.sessions, size))
                )
    print(
        f"\n{args.sessions} sessions x one {args.message_kb} kB message each, one worker "
        "(offline model, cache cap 128)\n"
    )
    print(
        "| budget | idle RSS | peak RSS | peak / budget | agents shed | cached at end "
        "| turns/s (vs baseline) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, budget, r in rows:
        ratio = f"{r['peak'] / budget:.2f}" if budget else "-"
        print(
            f"| {label} | {r['idle'] / MIB:.0f} MiB | {r['peak'] / MIB:.0f} MiB | {ratio} | "
            f"{r['shed']} | {r['cached']} | {r['rate']:.1f} ({r['rate'] / base['rate']:.2f}x) |"
        )


if __name__ == "__main__":
    main()
