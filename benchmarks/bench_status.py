"""What observing the cluster costs Redis: the health write per heartbeat, status, session, health.

Run: ``.venv/bin/python benchmarks/bench_status.py [--workers 8] [--sessions 2000]``

Starts its own redis-server and fills one namespace as N workers with S
owned sessions and 128 cached agents each would (membership, ownership,
health records; no worker processes). Timed, each against a baseline in the
same run: the health write a worker adds to every heartbeat, with its cache
unchanged (the usual case) and changed (the cached-sessions set rewritten),
against a bare PING; ``read_status`` (``agent-cluster status``),
``check_health`` (``agent-cluster health``) and ``read_session``
(``agent-cluster session``) without the CLI's process start.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_cluster import redis_server  # noqa: E402
from cluster.health_record import HealthRecord  # noqa: E402
from cluster.keys import Keyspace  # noqa: E402
from cluster.membership import RedisMembership  # noqa: E402
from cluster.ownership import RedisOwnershipStore  # noqa: E402
from coordinator.status import check_health, read_session, read_status  # noqa: E402
from worker.health import HealthWriter  # noqa: E402

CACHED = 128


def timed(action: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p99 of ``action`` in milliseconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def fill(client: redis.Redis, keys: Keyspace, workers: int, sessions: int) -> list[str]:
    membership = RedisMembership(client, keys, heartbeat_ttl=600)
    ids = [f"w{i}" for i in range(workers)]
    for worker_id in ids:
        membership.register(
            worker_id, host="bench", pid=1, queue=keys.worker_queue(worker_id), instance="i"
        )
    ownership = RedisOwnershipStore(client, keys)
    for i in range(sessions):
        ownership.lookup_or_assign(f"s{i}", eligible=ids, proposed=ids[i % workers])
    writer = HealthWriter(client, keys, ttl=600)
    for n, worker_id in enumerate(ids):
        owned = [f"s{i}" for i in range(n, sessions, workers)][:CACHED]
        writer.write(dataclasses.replace(RECORD, worker_id=worker_id), owned)
    return ids


RECORD = HealthRecord(
    worker_id="w0",
    instance="i",
    state="active",
    pid=1,
    host="bench",
    started=0.0,
    written_at=0.0,
    cache_size=CACHED,
    cache_cap=CACHED,
    cache_hits=10,
    cache_misses=5,
    cache_memory_bytes=0,
    turns_running=0,
    turns_waiting=0,
    concurrency=32,
    config_version=1,
    registry_generation=0,
)


def run(url: str, workers: int, sessions: int) -> None:
    client = redis.Redis.from_url(url)
    keys = Keyspace("bench")
    fill(client, keys, workers, sessions)
    cached = [f"s{i}" for i in range(0, sessions, workers)][:CACHED]
    writer = HealthWriter(client, keys, ttl=600)
    flip = [False]

    def changed() -> None:
        flip[0] = not flip[0]
        writer.write(RECORD, cached if flip[0] else cached[1:])

    rows = [
        ("PING (baseline: one round trip)", timed(client.ping, 500)),
        ("health write, cache unchanged", timed(lambda: writer.write(RECORD, cached), 500)),
        (f"health write, cache changed ({CACHED} keys)", timed(changed, 500)),
        (
            "check_health (agent-cluster health)",
            timed(lambda: check_health(client, keys, "w0"), 300),
        ),
        (
            "read_session (agent-cluster session)",
            timed(lambda: read_session(client, keys, "s8"), 300),
        ),
        (
            f"read_status, {workers} workers, {sessions} sessions",
            timed(lambda: read_status(client, keys), 30),
        ),
    ]
    ping = rows[0][1][0]
    print("| operation | p50 ms | p99 ms | p50 / PING |")
    print("|---|---|---|---|")
    for name, (p50, p99) in rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {p50 / ping:.1f}x |")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        run(url, args.workers, args.sessions)


if __name__ == "__main__":
    main()
